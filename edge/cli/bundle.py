"""matedge bundle: pack device builds into a self-contained app bundle."""

from __future__ import annotations

HELP = "pack device builds (artifacts, tokenizer, manifest with hashes and costs) into an app bundle"
DESCRIPTION = """\
Pack the builds in build/<device>/ into a folder an app loads: each build's artifact and its
fallback, tokenizer.json (+ tokenizer_config.json) and manifest.json (schema_version 1; JSON
Schema in edge/bundle/manifest.schema.json) with every file's sha256, every variant's spec,
validation loss, predicted and measured costs (with provenance), the limits it was chosen for,
its entry points, the selection rule the apps apply on the device, generation settings and the
chat template. The web app (apps/web) runs LiteRT builds; the native app (apps/native) runs
ExecuTorch builds.

  matedge bundle --device galaxy-s24-snapdragon --app web --out bundles/s24-web
  matedge bundle --devices host,pixel-8,raspberry-pi-5 --app native --out bundles/native
  matedge bundle --all          bundles/web and bundles/native from every build each app can run

Refused with exit code 2 and one line: a missing build or file, a build whose parity check
failed, a file whose sha256 differs from its build's record, a backend the app cannot run, an
--out this tool did not write. Bundles are written to a temporary folder and renamed."""


def configure(p) -> None:
    p.add_argument("--device", action="append", metavar="NAME", help="a built device (repeatable)")
    p.add_argument("--devices", metavar="A,B,C", help="several built devices in one bundle (comma-separated)")
    p.add_argument("--all", action="store_true",
                   help="one bundle per app (web, native) from every build that app can run, under --out")
    p.add_argument("--app", choices=["web", "native"], help="the app that loads the bundle")
    p.add_argument("--out", help="the bundle folder (with --all: the folder holding them; default bundles)")
    p.add_argument("--build-dir", default="build", help="where `matedge build` wrote the builds (default: build)")


def run(args) -> int:
    from pathlib import Path

    from edge.bundle.make import APP_BACKENDS, BundleError, list_builds, load_build

    build_root = Path(args.build_dir)
    if args.all:
        if args.device or args.devices:
            raise BundleError("--all bundles every build; leave out --device/--devices")
        root = Path(args.out or "bundles")
        builds = {d: load_build(build_root, d).backend for d in list_builds(build_root)}
        if not builds:
            raise BundleError(f"no builds in {str(build_root)!r} (run `matedge build --all` first)")
        apps = [args.app] if args.app else list(APP_BACKENDS)
        made = 0
        for app in apps:
            devices = [d for d, backend in builds.items() if backend == APP_BACKENDS[app]]
            if not devices:
                print(f"{app}: no {APP_BACKENDS[app]} build to bundle")
                continue
            _one(devices, app, root / app, build_root)
            made += 1
        for d, backend in builds.items():
            if backend not in APP_BACKENDS.values():
                print(f"{d}: {backend} builds have no sample app here (see the README for phone apps)")
        return 0 if made else 2
    devices = list(args.device or []) + [d for d in (args.devices or "").split(",") if d.strip()]
    if not devices:
        raise BundleError("name devices with --device NAME or --devices A,B,C, or use --all")
    if not args.app or not args.out:
        raise BundleError("--app web|native and --out FOLDER are required with --device/--devices")
    _one([d.strip() for d in devices], args.app, Path(args.out), build_root)
    return 0


def _one(devices, app, out, build_root) -> None:
    from edge.bundle.make import make_bundle

    print(f"== {app} bundle {out}: {', '.join(devices)}")
    m = make_bundle(devices, app, out, build_root)
    total = sum(f["bytes"] for f in m["files"].values())
    print(f"   {len(m['variants'])} variant(s), {len(m['files'])} files, {total / 2**20:.2f} MiB -> {out}/manifest.json")
