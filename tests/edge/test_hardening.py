"""Bad input, hostile files and faults: every case of tests/hostile/hostile_families.py.

Each case runs through the real CLI (in-process) and must end as the catalogue expects: exit 2
with exactly one ``matedge ...: error:`` line for bad input (or 0 for the controls), no
traceback, the user's files untouched and no temporaries left behind. The same catalogue is
what ``python tests/hostile/hostile_inputs.py`` counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "hostile"))

import hostile_cases as hc  # noqa: E402
import hostile_families as hf  # noqa: E402

CASES = hf.cases()


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return hc.Fixtures(tmp_path_factory.mktemp("fixtures"))


def _params(family: str):
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
            for c in CASES if c.family == family]


def _check(case, tmp_path, fixtures):
    out = hc.run_case(case, tmp_path / "work", fixtures)
    assert out.verdict == "clean", f"{case.id}: {out.verdict} {out.detail}\n{out.stderr[-2000:]}"
    assert not out.leftovers, f"{case.id} left {out.leftovers}"
    return out


@pytest.mark.parametrize("case", _params("destinations"))
def test_destinations_not_written_by_matedge_are_refused(case, tmp_path, fixtures):
    out = _check(case, tmp_path, fixtures)
    if case.expect == 2 and "user" in case.name:
        assert "--force" in out.stderr or "not a folder" in out.stderr


@pytest.mark.parametrize("case", _params("transports"))
def test_transports_that_could_be_options_are_refused(case, tmp_path, fixtures):
    _check(case, tmp_path, fixtures)


@pytest.mark.parametrize("case", _params("import"))
def test_imported_cost_tables_are_validated_like_measured_ones(case, tmp_path, fixtures):
    _check(case, tmp_path, fixtures)
    assert not list(tmp_path.parent.glob("**/evil*")), "a table's strings escaped the table folder"


@pytest.mark.parametrize("case", _params("loaders"))
def test_loaders_turn_unexpected_inputs_into_one_line(case, tmp_path, fixtures):
    _check(case, tmp_path, fixtures)


@pytest.mark.parametrize("case", _params("ranges"))
def test_numbers_outside_their_documented_range_are_refused(case, tmp_path, fixtures):
    _check(case, tmp_path, fixtures)


@pytest.mark.parametrize("case", _params("filesystem") or [pytest.param(None, marks=pytest.mark.skip(
    reason="needs mount rights for a tiny tmpfs (full disk, read-only)"))])
def test_full_disk_and_read_only_file_systems_are_one_line(case, tmp_path, fixtures):
    _check(case, tmp_path, fixtures)


def test_every_family_is_covered():
    families = {c.family for c in CASES}
    assert {"destinations", "transports", "import", "loaders", "ranges"} <= families
    assert len({c.id for c in CASES}) == len(CASES)


def test_an_imported_table_lands_only_in_the_cost_table_folder(tmp_path, fixtures, monkeypatch):
    """The control: a valid table is imported under build/cost_tables/<device>-<precision>.json."""
    import json

    from edge.cli import main

    monkeypatch.chdir(tmp_path)
    table = tmp_path / "t.json"
    table.write_text(json.dumps(fixtures.table))
    assert main(["profile", "import", str(table)]) == 0
    assert (tmp_path / "build" / "cost_tables" / "board-fp32.json").is_file()
    assert main(["profile", "import", str(table)]) == 0  # its own file is replaced


@pytest.mark.slow
def test_build_works_with_the_tiny_preset(tmp_path, fixtures):
    """max_context 64 < the build's default scoring window of 128: the build fits its windows,
    context and prompt to the model (it crashed before)."""
    import json

    from edge.cli import main

    prof = tmp_path / "board.toml"
    prof.write_text(hc.GOOD_PROFILE.format(name="board", transport="none", memory_mb=100)
                    .replace("context = 48", "context = 512").replace("prompt_tokens = 16", "prompt_tokens = 128"))
    code = main(["build", "--device", str(prof), "--checkpoint", str(fixtures.ckpt), "--out", str(tmp_path / "b"),
                 "--no-measure", "--quiet", "--eval-tokens", "256", "--generations", "0", "--population", "2"])
    assert code == 0
    manifest = json.loads((tmp_path / "b" / "board" / "manifest.json").read_text())
    assert manifest["context"] <= 64 and manifest["prompt_tokens"] < manifest["context"]
    assert manifest["provenance"]["seq_len"] == 64
    assert (tmp_path / "b" / "board" / ".matedge").is_file()


def test_the_aftermath_check_sees_lost_or_changed_user_data(tmp_path):
    import shutil

    hc.user_folder(tmp_path)
    hc.user_file(tmp_path)
    assert hc.intact(tmp_path) == ""
    (tmp_path / "notes.txt").write_text("overwritten")
    assert "changed" in hc.intact(tmp_path)
    shutil.rmtree(tmp_path / "my_folder")
    assert "deleted" in hc.intact(tmp_path)
