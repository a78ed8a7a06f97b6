"""matedge profiles: list, show and validate the device profiles (device_profiles/*.toml)."""

from __future__ import annotations

HELP = "list, show or validate device profiles (device_profiles/*.toml)"
DESCRIPTION = """\
Device profiles say what a target may spend on the model (memory, decode ms/token, time to first
token), which backend and precision it runs, and how to reach it (local, ssh://, adb, none).

  matedge profiles list
  matedge profiles show raspberry-pi-5
  matedge profiles validate                 # every shipped profile
  matedge profiles validate my-board.toml   # a file of your own"""


def configure(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="one line per shipped profile")
    show = sub.add_parser("show", help="every field of one profile")
    show.add_argument("name", metavar="NAME", help="a shipped profile's name or a .toml path")
    val = sub.add_parser("validate", help="check profiles; report every problem of each file")
    val.add_argument("names", metavar="NAME|FILE", nargs="*", help="default: all shipped profiles")


def run(args) -> int:
    return {"list": _list, "show": _show, "validate": _validate}[args.action](args)


def _list(args) -> int:
    from edge.device.profiles import ProfileError, list_profiles, load_profile
    from edge.texttable import format_table

    rows = []
    for name in list_profiles():
        try:
            p = load_profile(name)
            decode = f"{p.limits.decode_ms_per_token:g}"
            if p.limits.decode_vs_largest is not None:  # relative to the device's own largest spec
                decode += f", {p.limits.decode_vs_largest:g}x largest"
            rows.append([p.name, p.backend, p.precision, p.transport, p.limits.memory_mb, decode, p.description])
        except ProfileError as e:
            rows.append([name, "INVALID", "", "", "", "", str(e)[:60]])
    print(format_table(["name", "backend", "precision", "transport", "memory MB", "decode ms/tok", "description"], rows))
    return 0


def _show(args) -> int:
    from edge.device.profiles import load_profile

    p = load_profile(args.name)
    d = p.to_dict()
    for key in ("name", "description", "backend", "precision", "threads", "context", "transport"):
        print(f"{key:<22} {d[key]}")
    for section in ("limits", "hardware"):
        print(f"[{section}]")
        for key, value in d[section].items():
            print(f"  {key:<20} {value}")
    if p.transport == "none":
        print("note: transport none -> costs are roofline estimates from [hardware], marked 'estimated'")
    return 0


def _validate(args) -> int:
    from edge.device.profiles import ProfileError, list_profiles, load_profile

    names = args.names or list_profiles()
    if not names:
        raise ProfileError("no profiles to validate (device_profiles/ is empty)")
    bad = []
    for name in names:
        try:
            p = load_profile(name)
            print(f"ok       {p.path}")
        except ProfileError as e:
            bad.append(str(e))
            print(f"INVALID  {e}")
    if bad:
        raise ProfileError(f"{len(bad)} of {len(names)} profile(s) invalid (details above)")
    return 0
