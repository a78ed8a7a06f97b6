"""Hostile inputs, interruptions and mutated files against matedge: print the counts.

Runs every case of the catalogues and prints, per family and in total: cases tried, clean
errors (or clean runs for the controls), tracebacks, signals (a process killed by one),
leftovers (temporaries left behind) and other wrong outcomes, then every case that was not clean.

    python tests/hostile/hostile_inputs.py                  everything (exports: minutes on a busy machine)
    python tests/hostile/hostile_inputs.py --mutants 100    runner fuzzing depth per backend and mode
    python tests/hostile/hostile_inputs.py --skip runners --skip signals    the in-process families only

Families: destinations, transports, import, loaders, ranges, filesystem (full disk and
read-only: needs mount rights) from tests/hostile/hostile_families.py; runner arguments and fuzzing (plain
mutants, and mutants whose metadata was rewritten to match) from tests/hostile/hostile_runners.py;
SIGINT/SIGTERM per command family from tests/hostile/hostile_signals.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "hostile"))

COLUMNS = ("tried", "clean", "tracebacks", "signals", "leftovers", "wrong")


def cli_families(work: Path, counts, failures, include_slow: bool) -> None:
    import hostile_cases as hc
    import hostile_families as hf

    fx_root = work / "fixtures"
    fx_root.mkdir(parents=True)
    fx = hc.Fixtures(fx_root)
    for i, case in enumerate(hf.cases()):
        if case.slow and not include_slow:
            continue
        out = hc.run_case(case, work / f"case{i}", fx)
        row = counts[case.family]
        row["tried"] += 1
        row["clean"] += out.verdict == "clean" and not out.leftovers
        row["tracebacks"] += out.verdict == "traceback"
        row["wrong"] += out.verdict == "wrong"
        row["leftovers"] += bool(out.leftovers)
        if out.verdict != "clean" or out.leftovers:
            failures.append(f"{case.id}: {out.verdict} {out.detail} {out.leftovers or ''}".strip())


def runner_families(work: Path, counts, failures, n: int) -> None:
    import hostile_runners as hr

    arts = hr.export_artifacts(work / "arts")
    for backend, art in arts.items():
        args_dir = work / f"args-{backend}"
        args_dir.mkdir(parents=True)
        for name, args in hr.bad_argument_cases(backend, art, args_dir).items():
            out = hr.run(backend, args, timeout=60)
            _count(counts[f"runner-args-{backend}"], out.verdict, failures, f"{backend} {name}: {out.line}",
                   want_code=2, code=out.code)
        for resign in (False, True):
            fam = f"runner-fuzz-{backend}-{'resigned' if resign else 'plain'}"
            fuzz_dir = work / fam
            fuzz_dir.mkdir(parents=True)
            c = hr.fuzz(backend, art, fuzz_dir, n, resign)
            row = counts[fam]
            row["tried"] += n
            row["clean"] += c["clean"]
            row["signals"] += c["signal"]
            row["wrong"] += c["wrong"]
            row["ran"] = row.get("ran", 0) + c["ran"]
            row["crash"] = row.get("crash", 0) + c["crash_reported"]
            if c["signal"] or c["wrong"]:
                failures.append(f"{fam}: {c}")


def _count(row, verdict: str, failures: list, what: str, want_code: int, code: int) -> None:
    row["tried"] += 1
    ok = verdict == "clean" and code == want_code
    row["clean"] += ok
    row["signals"] += verdict == "signal"
    row["wrong"] += not ok and verdict != "signal"
    if not ok:
        failures.append(what)


def signal_families(work: Path, counts, failures) -> None:
    import hostile_signals as hs

    table = hs.cases(*hs.make_checkpoints(work / "ckpts"))
    for name in table:
        stopped, problems = hs.run_case(name, table, work / name)
        row = counts["signals-" + name.split("-")[0]]
        row["tried"] += 1
        row["clean"] += not problems
        row["tracebacks"] += any("traceback" in p for p in problems)
        row["leftovers"] += any(p.startswith("left") for p in problems)
        row["wrong"] += bool(problems) and not any(p.startswith(("left", "traceback")) for p in problems)
        if problems:
            failures.append(f"{name}: {problems}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", type=int, default=50, help="mutated artifacts per backend and mode (default: 50)")
    p.add_argument("--skip", action="append", default=[], choices=["cli", "runners", "signals", "slow"])
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    counts = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work = Path(tmp)
        if "cli" not in args.skip:
            cli_families(work / "cli", counts, failures, include_slow="slow" not in args.skip)
        if "runners" not in args.skip:
            runner_families(work / "runners", counts, failures, args.mutants)
        if "signals" not in args.skip:
            signal_families(work / "signals", counts, failures)
    from edge.texttable import format_table

    rows = [[fam, *(row[c] for c in COLUMNS), row.get("ran", ""), row.get("crash", "")] for fam, row in counts.items()]
    total = {c: sum(row[c] for row in counts.values()) for c in COLUMNS}
    rows.append(["TOTAL", *(total[c] for c in COLUMNS), "", ""])
    print(format_table(["family", *COLUMNS, "fuzz: ran ok", "fuzz: crash -> 1 line"], rows))
    for f in failures:
        print(f"NOT CLEAN {f}")
    return 0 if total["clean"] == total["tried"] else 1


if __name__ == "__main__":
    sys.exit(main())
