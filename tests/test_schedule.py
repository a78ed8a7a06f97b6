"""`make test`'s scheduler (tests/schedule.py): the files of a test group run on one worker, every
other file stays whole on one worker, and units are handed out heaviest first."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each test sleeps a little, so that both workers get work, and logs "file worker".
TEST_FILE = """\
import os, time
import pytest

@pytest.mark.parametrize("i", range(4))
def test_{name}(i):
    time.sleep(0.2)
    with open(os.environ["SCHEDULE_LOG"], "a") as f:
        f.write("{name} " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def _pytest(folder: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    """pytest over ``folder`` with the scheduler plugin and no ini file but the options given."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"SCHEDULE_LOG": str(log)} if log else {})}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.schedule", "-p", "no:cacheprovider",
                           "--rootdir", str(folder), "-c", os.devnull, *args, str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_a_group_runs_on_one_worker_and_other_files_stay_whole(tmp_path):
    pytest.importorskip("xdist")
    for name in "abcde":
        (tmp_path / f"test_{name}.py").write_text(TEST_FILE.format(name=name))
    log = tmp_path / "log.txt"
    r = _pytest(tmp_path, "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder",
                "-o", "test_groups=shared: test_a.py test_b.py", log=log)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line.split() for line in log.read_text().split("\n") if line]
    workers = defaultdict(set)
    for name, worker in lines:
        workers[name].add(worker)
    assert len(lines) == 20 and all(len(w) == 1 for w in workers.values()), dict(workers)  # no file split
    assert workers["a"] == workers["b"]  # the group's files on one worker (without it: a, b to each)
    assert len(set().union(*workers.values())) == 2  # and the rest went to the other


def test_a_bad_group_line_is_refused_in_one_line(tmp_path):
    (tmp_path / "test_a.py").write_text(TEST_FILE.format(name="a"))
    r = _pytest(tmp_path, "--collect-only", "-o", "test_groups=no files here")
    assert r.returncode != 0 and "test_groups line 'no files here' is not 'name: file file ...'" in r.stderr + r.stdout


class _Item:
    """What the ordering reads of a collected test: its node id."""

    def __init__(self, nodeid: str):
        self.nodeid = nodeid


def test_units_are_ordered_heaviest_first_with_a_group_weighing_its_files():
    """By tests/durations.json's seconds, a group's files summed and kept together, unlisted
    files last in their collection order."""
    from tests.schedule import order

    items = [_Item(f"test_{f}.py::test_{i}") for f in "abcdef" for i in range(2)]
    order(items, {"test_a.py": 3, "test_b.py": 5, "test_c.py": 3, "test_d.py": 1},  # group g: 6 > b's 5
          {"test_a.py": "g", "test_c.py": "g"})
    files = list(dict.fromkeys(it.nodeid.split("::")[0] for it in items))
    assert files == ["test_a.py", "test_c.py", "test_b.py", "test_d.py", "test_e.py", "test_f.py"]
    assert [it.nodeid for it in items[:2]] == ["test_a.py::test_0", "test_a.py::test_1"]  # a file's own order
