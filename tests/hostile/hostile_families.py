"""The catalogue of hostile inputs, family by family (see hostile_cases.py for how a case runs).

Families follow the classes of the hardening issue: destinations (user data is never replaced),
transports (nothing becomes an ssh/adb option), import (cost tables validated strictly), loaders
(huge ints, deep nesting, FIFOs, folders, wrong types, unreadable train_state.pt), ranges
(finite documented ranges, sizes checked before allocation) and filesystem (full disk,
read-only; needs mount rights).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

from hostile_cases import (DEEP_JSON, HUGE_INT, Case, Fixtures, ckpt_copy, intact,
                           nothing_outside, profile_file, replace_with, table_file, user_file, user_folder)

# -- the catalogue -----------------------------------------------------------------------------------
def cases() -> list[Case]:
    """Every case of every family (see the module doc)."""
    return destinations() + transports() + imports() + loaders() + ranges() + filesystems()


def destinations() -> list[Case]:
    f = "destinations"
    slice_ = lambda out: (lambda w, fx: ["slice", str(fx.ckpt), "--spec", "S", "--out", str(out(w))])  # noqa: E731
    return [
        Case(f, "slice-into-user-folder", slice_(user_folder), after=intact),
        Case(f, "slice-onto-user-file", slice_(user_file), after=intact),
        Case(f, "train-into-user-folder", lambda w, fx: ["train", "--preset", "tiny", "--steps", "1", "--quiet",
                                                         "--out", str(user_folder(w))], after=intact),
        Case(f, "train-onto-user-file", lambda w, fx: ["train", "--preset", "tiny", "--steps", "1", "--quiet",
                                                       "--out", str(user_file(w))], after=intact),
        Case(f, "build-device-folder-is-users", lambda w, fx: [
            "build", "--device", str(profile_file(w)), "--checkpoint", str(fx.ckpt), "--out", str(_mk_build_root(w)),
            "--no-measure", "--quiet"], after=lambda w: "" if (w / "b" / "board" / "thesis.txt").exists() else "deleted"),
        Case(f, "import-onto-user-file", lambda w, fx: ["profile", "import", str(table_file(w, fx, lambda t: None)),
                                                        "--out", str(user_file(w))], after=intact),
        Case(f, "export-onto-foreign-artifact", _export_onto_foreign,
             after=lambda w: "" if (w / "out" / "model.pte").read_text() == "mine" else "overwritten"),
        Case(f, "slice-twice-replaces-own-output", _slice_twice, expect=0),
        Case(f, "slice-force-replaces-user-folder", lambda w, fx: ["slice", str(fx.ckpt), "--spec", "S", "--out",
                                                                   str(user_folder(w)), "--force"], expect=0),
        Case(f, "fine-tune-into-user-folder", _fine_tune(user_folder), after=intact),
        Case(f, "fine-tune-force-replaces-user-folder", _fine_tune(user_folder, "--force"), expect=0),
        Case(f, "chart-onto-user-file", _chart(user_file), after=intact),
        Case(f, "chart-onto-user-png", _chart(_user_png), after=_png_intact),
        Case(f, "chart-twice-replaces-own-chart", _chart_twice, expect=0),
        Case(f, "chart-force-replaces-user-png", _chart(_user_png, "--force"), expect=0),
    ] + [Case(f, f"profile-name-{label}", (lambda name: lambda w, fx: [
        "build", "--device", str(profile_file(w, name=name)), "--checkpoint", str(fx.ckpt), "--out", str(w / "b"),
        "--no-measure", "--quiet"])(name)) for label, name in
        (("dot", "."), ("dotdot", ".."), ("slash", "a/b"), ("dash", "-x"), ("hidden", ".git"), ("space", "a b"))]


def _mk_build_root(w: Path) -> Path:
    root = w / "b"
    (root / "board").mkdir(parents=True)
    (root / "board" / "thesis.txt").write_text("years of work")
    return root


def _export_onto_foreign(w: Path, fx: Fixtures) -> list[str]:
    (w / "out").mkdir()
    (w / "out" / "model.pte").write_text("mine")
    return ["export", str(fx.ckpt), "--spec", "S", "--backend", "executorch", "--out", str(w / "out"), "--no-parity"]


def _fine_tune(out, *extra):
    """argv of a one-step nested fine-tune (`train --init`) into the path ``out(work)`` makes."""
    return lambda w, fx: ["train", "--init", str(fx.ckpt), "--steps", "1", "--batch-size", "1", "--seq-len", "16",
                          "--eval-every", "0", "--quiet", "--out", str(out(w)), *extra]


def _chart(out, *extra):
    """argv of `profile chart` onto the path ``out(work)`` makes."""
    return lambda w, fx: ["profile", "chart", "--device", str(profile_file(w)), "--table",
                          str(table_file(w, fx, lambda t: None)), "--out", str(out(w)), *extra]


def _user_png(w: Path) -> Path:
    """A PNG of the user's (not a chart of ours); a copy beside it lets the aftermath compare."""
    from PIL import Image

    path = w / "plot.png"
    Image.new("RGB", (4, 4), "red").save(path)
    (w / ".plot.orig").write_bytes(path.read_bytes())
    return path


def _png_intact(w: Path) -> str:
    return "" if (w / "plot.png").read_bytes() == (w / ".plot.orig").read_bytes() else "plot.png was overwritten"


def _chart_twice(w: Path, fx: Fixtures) -> list[str]:
    from edge.cli import main

    argv = _chart(lambda w: w / "chart.png")(w, fx)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return argv


def _slice_twice(w: Path, fx: Fixtures) -> list[str]:
    from edge.cli import main

    argv = ["slice", str(fx.ckpt), "--spec", "S", "--out", str(w / "sl")]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return argv


def transports() -> list[Case]:
    bad = {"ssh-F": "ssh://-Fevil.cfg", "ssh-J": "ssh://-Jjump", "ssh-V": "ssh://-V",
           "ssh-user-option": "ssh://-oProxyCommand=touch@host", "ssh-host-option": "ssh://me@-oProxyCommand",
           "ssh-semicolon": "ssh://a@b;touch", "ssh-space": "ssh://a b", "ssh-dollar": "ssh://$(touch)",
           "adb-H": "adb:-Hevil", "adb-s": "adb:-s", "adb-L": "adb:-Ltcp:1", "adb-space": "adb:a b",
           "ssh-port": "ssh://h:99999", "ssh-empty": "ssh://"}
    return [Case("transports", label, (lambda t: lambda w, fx: ["profiles", "show", str(profile_file(w, transport=t))])(t))
            for label, t in bad.items()] + [
        Case("transports", f"profile-{label}", (lambda t: lambda w, fx: [
            "profile", "--device", str(profile_file(w, transport=t)), "--checkpoint", str(fx.ckpt)])(t))
        for label, t in (("ssh-F", "ssh://-Fevil.cfg"), ("adb-H", "adb:-Hevil"))]


def imports() -> list[Case]:
    def set_(path: str, value):
        def edit(t):
            keys = path.split(".")
            d = t
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value
        return edit

    edits = {
        "device-escapes": set_("device", "../../evil"), "device-slash": set_("device", "a/b"),
        "device-dot": set_("device", "."), "device-dash": set_("device", "-rf"),
        "precision-escapes": set_("precision", "../p"), "precision-unknown": set_("precision", "int3"),
        "backend-unknown": set_("backend", "tensorrt"), "backend-number": set_("backend", 7),
        "fixed-negative": set_("fixed.decode_ms", -5.0), "layer-negative": set_("layers.S.prefill_ms", -1.0),
        "nan": set_("fixed.decode_ms", float("nan")), "inf": set_("layers.XL.decode_ms", float("inf")),
        "huge-latency": set_("fixed.prefill_ms", 1e308), "huge-bytes": set_("fixed.weight_bytes", 1e300),
        "widths-string": set_("model.widths.S", "8"), "widths-bool": set_("model.widths.S", True),
        "widths-float": set_("model.widths.S", 8.5), "threads-zero": set_("threads", 0),
        "threads-huge": set_("threads", 10**9), "context-float": set_("context", 64.0),
        "d_model-huge": set_("model.d_model", 2**40), "spill-negative": set_("spill", {"decode_ms": [
            {"above_bytes": 1.0, "ms_per_mib": -1.0}]}),
        "estimated-string": set_("estimated", "no"), "model-list": set_("model", [1, 2]),
    }
    out = [Case("import", label, (lambda e: lambda w, fx: ["profile", "import", str(table_file(w, fx, e))])(e),
                after=nothing_outside) for label, e in edits.items()]
    for label, text in (("huge-int", '{"threads": ' + HUGE_INT + "}"), ("deep", DEEP_JSON), ("not-json", "{"),
                        ("not-utf8", None), ("empty", "")):
        def make(w, fx, text=text):
            p = w / "t.json"
            p.write_bytes(b"\xff\xfe\x00garbage" if text is None else text.encode())
            return ["profile", "import", str(p)]
        out.append(Case("import", label, make))
    for kind in ("dir", "fifo"):
        out.append(Case("import", f"file-is-{kind}", (lambda k: lambda w, fx: (
            replace_with(w / "t.json", k), ["profile", "import", str(w / "t.json")])[1])(kind)))
    return out


def loaders() -> list[Case]:
    f = "loaders"
    out = []
    info = lambda ck: ["slice", str(ck), "--spec", "S", "--out", str(ck.parent / "sliced")]  # noqa: E731
    config_edits = {
        "config-huge-int": lambda d: replace_with(d / "config.json", "text", '{"d_model": ' + HUGE_INT + "}"),
        "config-deep": lambda d: replace_with(d / "config.json", "text", DEEP_JSON),
        "config-dir": lambda d: replace_with(d / "config.json", "dir"),
        "config-fifo": lambda d: replace_with(d / "config.json", "fifo"),
        "config-list": lambda d: replace_with(d / "config.json", "text", "[1, 2]"),
        "config-not-utf8": lambda d: (d / "config.json").write_bytes(b"\xff\xfe{}"),
        "weights-dir": lambda d: replace_with(d / "model.safetensors", "dir"),
        "weights-fifo": lambda d: replace_with(d / "model.safetensors", "fifo"),
        "weights-garbage": lambda d: replace_with(d / "model.safetensors", "text", "garbage" * 100),
        "meta-deep": lambda d: replace_with(d / "meta.json", "text", DEEP_JSON),
        "meta-fifo": lambda d: replace_with(d / "meta.json", "fifo"),
        "meta-list": lambda d: replace_with(d / "meta.json", "text", "[]"),
        "meta-train-args-list": lambda d: replace_with(d / "meta.json", "text", '{"train_args": [1]}'),
        "meta-data-int": lambda d: replace_with(d / "meta.json", "text", '{"train_args": {"data": 5}}'),
        "meta-history-dict": lambda d: replace_with(d / "meta.json", "text", '{"history": {"a": 1}}'),
        "checkpoint-is-file": lambda d: (__import__("shutil").rmtree(d), d.write_text("x")),
    }
    for field, value in (("d_model", '"64"'), ("ffn_sizes", '"abc"'), ("granularity_fractions", "5"),
                         ("n_layers", "true"), ("rope_base", "1e999"), ("d_model", str(2**20)),
                         ("granularity_names", '[1, 2, 3, 4]'), ("max_context", "-1")):
        config_edits[f"config-{field}-{value.strip(chr(34))[:8]}"] = (
            lambda fld, val: lambda d: _edit_config(d, fld, val))(field, value)
    for label, edit in config_edits.items():
        out.append(Case(f, label, (lambda e: lambda w, fx: info(ckpt_copy(w, fx, e)))(edit)))
    for label, maker in (("garbage", lambda p: p.write_bytes(b"PK\x03\x04 not a zip")), ("empty", lambda p: p.write_bytes(b"")),
                         ("dir", lambda p: p.mkdir()), ("wrong-structure", _wrong_state)):
        out.append(Case(f, f"train-state-{label}", (lambda m: lambda w, fx: _resume_case(w, fx, m))(maker)))
    toml = {"toml-huge-int": "threads = " + HUGE_INT, "toml-deep": "a = " + "[" * 100_000 + "]" * 100_000,
            "toml-not-utf8": None, "toml-bad": "[limits", "toml-empty": ""}
    for label, text in toml.items():
        def make(w, fx, text=text):
            p = w / "board.toml"
            p.write_bytes(b"\xff\xfe" if text is None else text.encode())
            return ["profiles", "show", str(p)]
        out.append(Case(f, label, make))
    for kind in ("dir", "fifo"):
        out.append(Case(f, f"toml-is-{kind}", (lambda k: lambda w, fx: (
            replace_with(w / "board.toml", k), ["profiles", "show", str(w / "board.toml")])[1])(kind)))
    out += [
        Case(f, "build-out-is-file", lambda w, fx: ["build", "--device", str(profile_file(w)), "--checkpoint", str(fx.ckpt),
                                                    "--out", str(user_file(w)), "--no-measure", "--quiet"], after=intact),
        Case(f, "export-out-is-file", lambda w, fx: ["export", str(fx.ckpt), "--spec", "S", "--backend", "executorch",
                                                     "--out", str(user_file(w)), "--no-parity"], after=intact),
        Case(f, "profile-out-is-dir", lambda w, fx: ["profile", "--device", str(profile_file(w)), "--checkpoint",
                                                     str(fx.ckpt), "--out", str(user_folder(w))], after=intact),
        Case(f, "data-is-fifo", lambda w, fx: (os.mkfifo(w / "d.txt"), ["train", "--preset", "tiny", "--steps", "1",
                                                                          "--data", str(w / "d.txt"), "--out",
                                                                          str(w / "ck2"), "--quiet"])[1]),
    ]
    return out


def _edit_config(d: Path, field: str, value: str) -> None:
    data = json.loads((d / "config.json").read_text())
    text = json.dumps(data).replace(f'"{field}": {json.dumps(data[field])}', f'"{field}": {value}')
    (d / "config.json").write_text(text)


def _wrong_state(p: Path) -> None:
    import torch

    torch.save({"optimizer": {"state": {}, "param_groups": []}, "step": "x", "gens": []}, p)


def _resume_case(w: Path, fx: Fixtures, maker) -> list[str]:
    ck = ckpt_copy(w, fx, lambda d: None)
    maker(ck / "train_state.pt")
    return ["train", "--preset", "tiny", "--steps", "2", "--out", str(ck), "--quiet"]


def ranges() -> list[Case]:
    f = "ranges"
    profile_edits = {
        "memory-inf": ("memory_mb = 100", "memory_mb = inf"), "memory-nan": ("memory_mb = 100", "memory_mb = nan"),
        "memory-1e308": ("memory_mb = 100", "memory_mb = 1e308"), "decode-zero": ("decode_ms_per_token = 5", "decode_ms_per_token = 0"),
        "decode-inf": ("decode_ms_per_token = 5", "decode_ms_per_token = inf"),
        "context-1e8": ("context = 48", "context = 100000000"), "prompt-1e8": ("prompt_tokens = 16", "prompt_tokens = 100000000"),
        "gflops-inf": ("gemm_gflops = 10", "gemm_gflops = inf"), "bandwidth-1e308": ("memory_bandwidth_gbs = 4", "memory_bandwidth_gbs = 1e308"),
        "threads-huge": ("threads = 2", "threads = 1000000"), "threads-bool": ("threads = 2", "threads = true"),
        "cores-huge": ("[hardware]", "[hardware]\ncores = 10000000"), "overhead-negative": ("[hardware]", "[hardware]\nruntime_overhead_mb = -1"),
        "description-huge": ('description = "a test board"', 'description = "' + "x" * 10_000 + '"'),
    }
    out = [Case(f, label, (lambda a, b: lambda w, fx: ["profiles", "show", str(profile_file(w, edit=lambda t: t.replace(a, b)))])(a, b))
           for label, (a, b) in profile_edits.items()]
    for label, spec in (("spec-repeat-3e8", "S*300000000"), ("spec-repeat-huge", "S*" + "9" * 50), ("spec-repeat-zero", "S*0"),
                        ("spec-long", "S," * 100_000), ("spec-negative", "S*-1")):
        out.append(Case(f, label, (lambda s: lambda w, fx: ["slice", str(fx.ckpt), "--spec", s, "--out", str(w / "o")])(spec)))
    for label, argv in (("train-threads-negative", ["train", "--threads", "-1"]), ("train-steps-huge", ["train", "--steps", "1" + "0" * 30]),
                        ("train-lr-nan", ["train", "--preset", "tiny", "--lr", "nan", "--steps", "1"]),
                        ("train-probs-inf", ["train", "--preset", "tiny", "--probs", "inf,1,1,1"]),
                        ("build-runs-huge", ["build", "--all", "--runs", "10" * 10]), ("export-context-huge",
                                                                                       ["export", "--backend", "executorch", "--out", "x", "--context", "100000000"]),
                        ("profile-runs-zero", ["profile", "--device", "host", "--runs", "0"]), ("eval-tokens-negative", ["eval", "--eval-tokens", "-5"])):
        out.append(Case(f, label, (lambda a: lambda w, fx: a)(argv)))
    out.append(Case(f, "config-d_model-2^20", lambda w, fx: info_cfg(w, fx, "d_model", str(2**20))))
    return out


def info_cfg(w: Path, fx: Fixtures, field: str, value: str) -> list[str]:
    ck = ckpt_copy(w, fx, lambda d: _edit_config(d, field, value))
    return ["info", str(ck)]


def can_mount() -> bool:
    """Full-disk and read-only cases mount a tiny tmpfs: root (with mount rights) only."""
    import subprocess

    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", d], capture_output=True)
    return ok


def _mount(w: Path, options: str) -> Path:
    import subprocess

    mnt = w / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], check=True, capture_output=True)
    return mnt


def _umount(w: Path) -> None:
    import subprocess

    subprocess.run(["umount", str(w / "mnt")], capture_output=True)


def _full(w: Path) -> Path:
    return _mount(w, "size=96k")  # a tiny checkpoint is ~1 MB: the write runs out of space


def _read_only(w: Path) -> Path:
    return _mount(w, "size=1m,ro")


def filesystems() -> list[Case]:
    """ENOSPC and EROFS: one line, exit 2, no temporaries left (needs mount rights; else none)."""
    if not can_mount():
        return []
    f = "filesystem"
    empty = lambda w: "" if not any((w / "mnt").iterdir()) else f"left {list((w / 'mnt').iterdir())}"  # noqa: E731
    return [
        Case(f, "slice-disk-full", lambda w, fx: ["slice", str(fx.ckpt), "--spec", "XL", "--out", str(_full(w) / "o")],
             after=empty, cleanup=_umount),
        Case(f, "slice-read-only", lambda w, fx: ["slice", str(fx.ckpt), "--spec", "XL", "--out", str(_read_only(w) / "o")],
             cleanup=_umount),
        Case(f, "import-read-only", lambda w, fx: ["profile", "import", str(table_file(w, fx, lambda t: None)), "--out",
                                                   str(_read_only(w) / "t.json")], cleanup=_umount),
        Case(f, "import-disk-full", lambda w, fx: ["profile", "import", str(table_file(w, fx, lambda t: t.update(
            micro=[{"pad": "x" * 200_000}]))), "--out", str(_full(w) / "t.json")], after=empty, cleanup=_umount),
        Case(f, "export-disk-full", lambda w, fx: ["export", str(fx.ckpt), "--spec", "XL", "--backend", "executorch",
                                                   "--out", str(_full(w)), "--no-parity"], after=empty, cleanup=_umount, slow=True),
    ]
