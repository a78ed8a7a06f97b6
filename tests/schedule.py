"""Heaviest test files first, so parallel workers finish together.

`make test` gives each worker whole files (``--dist loadfile``: a file's module fixtures, its
exports, are made once). pytest-xdist hands out files in collection order once
``--no-loadscope-reorder`` stops it from sorting them by their number of tests, which put files
of a few minute-long tests (the elastic exports) last, on one worker, while the other sat idle.
This plugin sorts the files by their measured seconds in ``tests/durations.json``, heaviest first
(the longest-processing-time rule); files not listed keep their place after the listed ones.

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


def _load() -> dict[str, float]:
    try:
        data = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(session, config, items) -> None:
    weight = _load()
    first = {}  # file -> its first position: ties and unlisted files keep the collection order
    for i, item in enumerate(items):
        first.setdefault(_file(item.nodeid), i)
    items.sort(key=lambda it: (-weight.get(_file(it.nodeid), 0.0), first[_file(it.nodeid)]))


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
