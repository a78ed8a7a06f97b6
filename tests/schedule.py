"""Heaviest test files first, so parallel workers finish together; files that share a session
fixture on one worker.

`make test` gives each worker whole files (``--dist loadfile``: a file's module fixtures, its
exports, are made once). A session fixture is made once per worker, so files that share an
expensive one (the app tests' builds) are declared a group (``test_groups`` in pyproject.toml:
``"name: file file ..."``) and handed out as one unit of work. (pytest-xdist's own
``xdist_group`` marks do nothing with pytest 9.2: xdist 3.8 renames ``item._nodeid``, which
pytest no longer reads.)

pytest-xdist hands out units in collection order once ``--no-loadscope-reorder`` stops it from
sorting them by their number of tests, which put files of a few minute-long tests (the elastic
exports) last, on one worker, while the other sat idle. This plugin sorts the units by their
measured seconds in ``tests/durations.json`` (a group: the sum of its files), heaviest first (the
longest-processing-time rule); files not listed keep their place after the listed ones.

``pytest --store-durations`` (with or without ``-n``) records the run's setup, call and teardown
times, summed per file, in whole seconds; files the run did not touch keep their entries.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")


def pytest_addoption(parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each test file's seconds to {DURATIONS.name} (orders later runs, heaviest first)")
    parser.addini("test_groups", type="linelist", default=[],
                  help='test files that share a session fixture, run on one worker: "name: file file ..."')


def _load() -> dict[str, float]:
    try:
        data = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def groups(config) -> dict[str, str]:
    """file -> its group's name, from the ``test_groups`` ini lines (a bad line: UsageError)."""
    out = {}
    for line in config.getini("test_groups"):
        name, sep, files = line.partition(":")
        if not sep or not name.strip() or not files.split():
            raise pytest.UsageError(f"test_groups line {line!r} is not 'name: file file ...'")
        out.update(dict.fromkeys(files.split(), f"group:{name.strip()}"))
    return out


def pytest_collection_modifyitems(session, config, items) -> None:
    order(items, _load(), groups(config))


def order(items: list, weight: dict[str, float], group: dict[str, str]) -> None:
    """Sort ``items`` in place: units (a group's files, or one file) by their seconds in
    ``weight`` (file -> s), heaviest first; a unit's tests keep their collection order."""
    def unit(item) -> str:
        return group.get(_file(item.nodeid), _file(item.nodeid))

    files: dict[str, set] = defaultdict(set)
    first = {}  # unit -> its first position: ties and unlisted units keep the collection order
    for i, item in enumerate(items):
        files[unit(item)].add(_file(item.nodeid))
        first.setdefault(unit(item), i)
    seconds = {u: sum(weight.get(f, 0.0) for f in fs) for u, fs in files.items()}
    items.sort(key=lambda it: (-seconds[unit(it)], first[unit(it)]))  # stable


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``: every file is one unit of work, and so is every group of files."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    group = groups(config)

    class FileGroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return group.get(file, file)

    return FileGroupScheduling(config, log)


_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report) -> None:
    # on the xdist controller too: it receives every worker's reports
    _seconds[_file(report.nodeid)] += report.duration


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus) -> None:
    config = session.config
    if not config.getoption("store_durations") or hasattr(config, "workerinput"):
        return  # only the controller (or a run without -n) writes
    merged = _load() | dict(_seconds)
    data = {f: round(s) for f, s in sorted(merged.items(), key=lambda kv: -kv[1])}
    tmp = DURATIONS.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(DURATIONS)
