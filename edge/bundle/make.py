"""``matedge bundle``: pack device builds into a self-contained app bundle.

A bundle folder holds each chosen build's artifact (and its fallback, and its elastic artifact
when the build wrote one: listed under ``elastic`` with its members), the tokenizer
(``tokenizer.json`` + ``tokenizer_config.json``) and ``manifest.json`` (schema:
``manifest.schema.json`` beside this file): every file's bytes and sha256, every variant's
quality, predicted and measured costs, the limits it was chosen for and its entry points, the
selection rule, generation settings and the chat template. Apps verify every hash before
loading and choose a variant with the rule (edge/bundle/selection.py).

Refused, with one line naming the thing: a missing build, file or tokenizer; a build whose
parity check failed; a file whose sha256 differs from its build's record; a backend the app
cannot run; builds of different checkpoints in one bundle; an ``--out`` this tool did not write.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge.bundle.selection import DEFAULT_RULE
from edge.checkpoint import atomic_dir
from edge.errors import MatEdgeError

SCHEMA_VERSION = 1
KIND = "matedge.bundle"
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")
APP_BACKENDS = {"web": "litert", "native": "executorch"}  # what each sample app's runtime loads
COSTS = ("memory_mb", "decode_ms_per_token", "first_token_ms")
GENERATION = {"max_new_tokens": 64, "temperature": 0.0, "benchmark_tokens": 8}


class BundleError(MatEdgeError):
    """A bundle cannot be made as asked (exit code 2, one line)."""


@dataclass
class DeviceBuild:
    """One device's ``build/<device>/`` as the bundler needs it."""
    device: str
    folder: Path
    manifest: dict

    @property
    def backend(self) -> str:
        return self.manifest["backend"]


def load_build(build_root: Path, device: str) -> DeviceBuild:
    """Read ``build_root/device/manifest.json`` or raise BundleError naming what is missing."""
    folder = Path(build_root) / device
    path = folder / "manifest.json"
    if not path.is_file():
        raise BundleError(f"no build for device {device!r}: {str(path)!r} is missing "
                          f"(run `matedge build --device {device}`)")
    try:
        manifest = json.loads(path.read_text())
        manifest["artifacts"]["model"]
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{str(path)!r} is not a build manifest ({e})") from None
    return DeviceBuild(device, folder, manifest)


def list_builds(build_root: Path) -> list[str]:
    """Devices with a build manifest under ``build_root`` (sorted)."""
    root = Path(build_root)
    return sorted(p.parent.name for p in root.glob("*/manifest.json")) if root.is_dir() else []


def _sha256(path: Path) -> str:
    from exporters.base import sha256

    return sha256(path)


def _costs(d: dict | None) -> dict | None:
    return None if d is None else {k: d.get(k) for k in COSTS}


def _check_artifact(build: DeviceBuild, role: str, art: dict) -> tuple[Path, str]:
    """(the artifact's path, its sha256) after the parity, presence and hash checks."""
    parity = art.get("parity") or {}
    if not parity.get("passed"):
        raise BundleError(f"{build.device} {role} {art['spec']}: its parity check failed or is missing "
                          f"({str(build.folder / 'report.md')!r}); it is not bundled")
    return _unchanged(build, role, art)


def _check_elastic(build: DeviceBuild, art: dict) -> tuple[Path, str]:
    """(the elastic artifact's path, its sha256) after every member's parity, presence and hash."""
    parity = art.get("parity") or {}
    failed = [m for m, ok in parity.items() if not ok]
    if failed or not parity:
        raise BundleError(f"{build.device} elastic: member(s) {', '.join(failed) or '(none recorded)'} failed their "
                          f"parity check ({str(build.folder / 'report.md')!r}); it is not bundled")
    return _unchanged(build, "elastic", art)


def _unchanged(build: DeviceBuild, role: str, art: dict) -> tuple[Path, str]:
    """(path, sha256) of the artifact's file if it is there with the hash its build recorded."""
    path = build.folder / art["file"]
    if not path.is_file():
        raise BundleError(f"{build.device} {role}: file {str(path)!r} is missing (re-run `matedge build`)")
    digest = _sha256(path)
    if art.get("sha256") and digest != art["sha256"]:
        raise BundleError(f"{build.device} {role}: {str(path)!r} has sha256 {digest[:12]}…, its build recorded "
                          f"{art['sha256'][:12]}…; the file changed since it was built")
    return path, digest


def _elastic(build: DeviceBuild, file_name: str, path: Path, digest: str) -> dict:
    """The bundle's record of one device's elastic artifact: its members and entry points."""
    m, art = build.manifest, build.manifest["artifacts"]["elastic"]
    meta = json.loads((build.folder / art["metadata"]).read_text())
    return {"name": f"{build.device}.elastic", "device": build.device, "file": file_name, "sha256": digest,
            "bytes": path.stat().st_size, "backend": m["backend"], "precision": m["precision"],
            "default": art["default"], "members": art["members"], "order": list(art["members"]),
            "context": m["context"],
            "entry_points": meta.get("entry_points", {})}


def _variant(build: DeviceBuild, role: str, file_name: str, path: Path, digest: str) -> dict:
    m, art = build.manifest, build.manifest["artifacts"][role]
    chosen = m if role == "model" else m["fallback"]
    meta = json.loads((build.folder / art["metadata"]).read_text()) if art.get("metadata") else {}
    return {"name": f"{build.device}.{role}", "device": build.device, "role": role, "file": file_name,
            "sha256": digest, "bytes": path.stat().st_size, "backend": m["backend"],
            "precision": m["precision"], "spec": chosen["spec"], "params": chosen["params"],
            "val_loss": chosen["val_loss"], "predicted": _costs(chosen["predicted"]),
            "predicted_from": "estimated" if m.get("estimated") else "measured",
            "measured": _costs(m.get("measured")) if role == "model" else None,
            "limits": _costs(m["limits"]), "context": m["context"], "prefill_tokens": m["prompt_tokens"],
            "cache": meta.get("cache", ""), "entry_points": meta.get("entry_points", {})}


def _copy_extra_files(build: DeviceBuild, role: str, dest: Path) -> dict[str, str]:
    """Copy the artifact's other files (e.g. the ``.litertlm`` that LiteRT-LM and Google's apps
    open, beside the bare ``.tflite``) as ``<device>.<role>.<suffix>``; {kind: bundle file name}.
    Tokenizer files are left out: the bundle carries the tokenizer once."""
    out = {}
    for kind, file in (build.manifest["artifacts"][role].get("files") or {}).items():
        if kind == "model" or kind.startswith("tokenizer"):
            continue
        src = build.folder / file
        if not src.is_file():
            raise BundleError(f"{build.device} {role}: file {str(src)!r} is missing (re-run `matedge build`)")
        out[kind] = f"{build.device}.{role}{''.join(src.suffixes)}"
        shutil.copyfile(src, dest / out[kind])
    return out


def _checkpoint_of(builds: list[DeviceBuild]) -> tuple[str, Path]:
    """(checkpoint sha256, checkpoint folder) shared by all builds, else BundleError."""
    shas = {b.manifest.get("provenance", {}).get("checkpoint_sha256") for b in builds}
    if len(shas) > 1:
        raise BundleError("these builds come from different checkpoints: "
                          + ", ".join(f"{b.device} ({b.manifest['provenance'].get('checkpoint')})" for b in builds)
                          + "; bundle builds of one model together")
    prov = builds[0].manifest.get("provenance", {})
    return prov.get("checkpoint_sha256") or "0" * 64, Path(prov.get("checkpoint", ""))


def _write_tokenizer(builds: list[DeviceBuild], checkpoint: Path, dest: Path) -> tuple[dict, str | None]:
    """Copy tokenizer.json (+ config) from a build folder or the checkpoint into ``dest``.

    A checkpoint older than tokenizer files is the byte-level model: its tokenizer is written."""
    from edge.tokenizer import TOKENIZER_CONFIG, TOKENIZER_JSON, load_tokenizer, tokenizer_files

    for folder in [b.folder for b in builds] + [checkpoint]:
        files = tokenizer_files(folder)
        if files:
            for f in files:
                shutil.copyfile(f, dest / f.name)
            break
    else:
        if not checkpoint.is_dir():
            raise BundleError(f"no tokenizer.json beside the builds, and their checkpoint {str(checkpoint)!r} "
                              "is gone; rebuild from an existing checkpoint")
        load_tokenizer(checkpoint).save(dest)  # the byte tokenizer of an older checkpoint
    tok = load_tokenizer(dest)
    return {"file": TOKENIZER_JSON, "config": TOKENIZER_CONFIG if (dest / TOKENIZER_CONFIG).exists() else None,
            "vocab_size": tok.vocab_size, "bos_id": tok.bos_id, "eos_ids": list(tok.eos_ids), "pad_id": tok.pad_id,
            "add_bos": tok.add_bos}, tok.chat_template


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that exists and was not written by this tool."""
    out = Path(out)
    if not out.exists():
        return
    try:
        ours = json.loads((out / "manifest.json").read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        ours = False
    if not out.is_dir() or not ours:
        raise BundleError(f"{str(out)!r} exists and is not a bundle written by `matedge bundle`; "
                          "choose another --out (nothing was overwritten)")


def make_bundle(devices: list[str], app: str, out: Path, build_root: Path = Path("build"), log=print) -> dict:
    """Write the bundle of ``devices``' builds for ``app`` (web | native) into ``out``; its manifest."""
    if app not in APP_BACKENDS:
        raise BundleError(f"unknown app {app!r}; choose one of {sorted(APP_BACKENDS)}")
    if not devices:
        raise BundleError("name at least one device")
    check_out(out)
    builds = [load_build(build_root, d) for d in dict.fromkeys(devices)]
    for b in builds:
        if b.backend != APP_BACKENDS[app]:
            raise BundleError(f"{b.device} was built for {b.backend}; the {app} app runs {APP_BACKENDS[app]} "
                              f"builds (choose a device whose profile says backend = \"{APP_BACKENDS[app]}\")")
    ckpt_sha, checkpoint = _checkpoint_of(builds)
    checked = [(b, role, _check_artifact(b, role, art)) for b in builds
               for role, art in b.manifest["artifacts"].items() if role != "elastic"]
    elastic = [(b, _check_elastic(b, b.manifest["artifacts"]["elastic"])) for b in builds
               if "elastic" in b.manifest["artifacts"]]
    with atomic_dir(out) as tmp:
        tokenizer, template = _write_tokenizer(builds, checkpoint, tmp)
        variants = []
        digests = {}  # bundle file name -> sha256 already computed (each file is read once)
        for b, role, (path, digest) in checked:
            name = f"{b.device}.{role}{''.join(path.suffixes)}"
            shutil.copyfile(path, tmp / name)
            digests[name] = digest
            variants.append(_variant(b, role, name, tmp / name, digest))
            extra = _copy_extra_files(b, role, tmp)
            if extra:
                variants[-1]["extra_files"] = extra
            log(f"   {name}: {variants[-1]['spec']} ({variants[-1]['bytes'] / 2**20:.1f} MiB)"
                + "".join(f", {f}" for f in extra.values()))
        members = []
        for b, (path, digest) in elastic:  # one file, several members: not a variant of its own
            name = f"{b.device}.elastic{''.join(path.suffixes)}"
            shutil.copyfile(path, tmp / name)
            digests[name] = digest
            members.append(_elastic(b, name, tmp / name, digest))
            log(f"   {name}: members {', '.join(members[-1]['members'])} ({members[-1]['bytes'] / 2**20:.1f} MiB)")
        manifest = {
            "schema_version": SCHEMA_VERSION, "kind": KIND, "app": app,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "devices": [b.device for b in builds], "checkpoint_sha256": ckpt_sha,
            "files": {p.name: {"bytes": p.stat().st_size, "sha256": digests.get(p.name) or _sha256(p)}
                      for p in sorted(tmp.iterdir())},
            "tokenizer": tokenizer, "variants": variants, "elastic": members, "selection": DEFAULT_RULE,
            "generation": {**GENERATION, "stop_ids": tokenizer["eos_ids"]}, "chat_template": template,
        }
        validate(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def validate(manifest: dict) -> None:
    """Check a bundle manifest against manifest.schema.json (jsonschema); BundleError otherwise."""
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    try:
        jsonschema.validate(manifest, schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise BundleError(f"bundle manifest invalid at {where}: {e.message}") from None
