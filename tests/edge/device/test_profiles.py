"""Device profiles are data under test: every shipped file validates; bad files fail clearly."""

from __future__ import annotations

import importlib

import pytest

from edge.cli import main
from edge.device.profiles import BACKEND_PRECISIONS, PROFILES_DIR, ProfileError, list_profiles, load_profile

GOOD = """\
name = "{name}"
description = "a test board"
backend = "executorch"
precision = "fp32"
threads = 2
context = 128
transport = "ssh://me@board.local:2222"
[limits]
memory_mb = 100
decode_ms_per_token = 5
first_token_ms = 50
prompt_tokens = 32
[hardware]
gemm_gflops = 10
memory_bandwidth_gbs = 4
"""


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_is_valid(name):
    p = load_profile(name)
    assert p.name == name and p.limits.prompt_tokens < p.context
    assert p.precision in BACKEND_PRECISIONS[p.backend]


def test_the_required_devices_are_shipped():
    names = list_profiles()
    for required in ("host", "raspberry-pi-5", "pixel-8", "iphone-15"):
        assert required in names
    backends = {load_profile(n).backend: load_profile(n).transport for n in names}
    assert backends["litert"].startswith("adb") and "coreml" in backends
    assert (PROFILES_DIR / "README.md").is_file()


def test_every_hardware_fact_has_a_source_comment():
    """Estimates are only as good as their inputs: each [hardware] line cites where it came from."""
    for path in PROFILES_DIR.glob("*.toml"):
        section = path.read_text().split("\n[hardware]\n", 1)[1]
        for line in section.strip().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                assert "# source:" in line, f"{path.name}: {line.strip()!r} cites no source"


def test_precisions_match_the_exporters():
    exporters = pytest.importorskip("exporters")
    assert set(BACKEND_PRECISIONS) == set(exporters.EXPORTERS)
    for backend, precisions in BACKEND_PRECISIONS.items():
        module = importlib.import_module(exporters.EXPORTERS[backend])  # the module itself is light
        assert tuple(module.PRECISIONS) == tuple(precisions)


def _write(tmp_path, text, name="board"):
    f = tmp_path / f"{name}.toml"
    f.write_text(text)
    return f


def test_a_good_file_outside_the_folder_loads(tmp_path):
    p = load_profile(_write(tmp_path, GOOD.format(name="board")))
    assert p.transport == "ssh://me@board.local:2222" and p.hardware.cores == 1
    assert p.limits.decode_vs_largest is None and "decode_vs_largest" not in p.to_dict()["limits"]


def test_a_relative_decode_limit_tightens_the_absolute_one(tmp_path):
    """decode_vs_largest: the planner's decode limit is that share of the largest spec's
    predicted decode on the device's own cost table, or the absolute limit when lower."""
    from edge.config import MatFormerConfig
    from edge.device.table_source import get_cost_table
    from edge.plan.build import cost_fn_for, device_limits, limits_of

    text = GOOD.format(name="board").replace("prompt_tokens = 32", "prompt_tokens = 32\ndecode_vs_largest = 0.5")
    p = load_profile(_write(tmp_path, text.replace("transport = \"ssh://me@board.local:2222\"", 'transport = "none"')))
    assert p.limits.decode_vs_largest == 0.5 and p.to_dict()["limits"]["decode_vs_largest"] == 0.5
    assert limits_of(p) == {"decode_ms_per_token": 5, "first_token_ms": 50, "memory_mb": 100}  # no table: absolute
    assert limits_of(p, 4.0)["decode_ms_per_token"] == 2.0 and limits_of(p, 40.0)["decode_ms_per_token"] == 5
    cfg = MatFormerConfig.from_preset("tiny")
    table = get_cost_table(p, cfg, measure="never", path=tmp_path / "table.json").table
    xl = cost_fn_for(table)(("XL",) * cfg.n_layers)["decode_ms_per_token"]
    lines: list[str] = []
    limits = device_limits(p, cfg, table, lines.append)
    assert limits["decode_ms_per_token"] == pytest.approx(min(5, 0.5 * xl))
    assert 0.5 * xl < 5 and len(lines) == 1 and f"0.5 of XL's predicted {xl:.3g}" in lines[0]  # it binds: said


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace('threads = 2', 'threads = 2\ncolour = "red"'), "colour = 'red': unknown field"),
    (lambda t: t.replace("memory_mb = 100", "memory_mb = -1"), "limits.memory_mb = -1 (allowed: a number in [0.001, 10,000,000])"),
    (lambda t: t.replace("first_token_ms = 50\n", ""), "limits.first_token_ms: missing"),
    (lambda t: t.replace('"executorch"', '"tensorrt"'), "backend = 'tensorrt' (allowed: executorch, litert, coreml)"),
    (lambda t: t.replace('"fp32"', '"int3"'), "precision = 'int3' (allowed for executorch"),
    (lambda t: t.replace("ssh://me@board.local:2222", "ftp://x"), "transport = 'ftp://x'"),
    (lambda t: t.replace("threads = 2", "threads = 1.5"), "threads = 1.5 (allowed: an integer in [1, 256])"),
    (lambda t: t.replace('name = "board"', 'name = "other"'), "name = 'other' (allowed: the file's name"),
    (lambda t: t + "\n[extra\n", "invalid TOML"),
    (lambda t: t.replace("prompt_tokens = 32", "prompt_tokens = 32\ndecode_vs_largest = 1.5"),
     "limits.decode_vs_largest = 1.5 (allowed: a number in (0, 1]: a share of the largest spec's predicted decode)"),
    (lambda t: t.replace("prompt_tokens = 32", "prompt_tokens = 32\ndecode_vs_largest = 0"),
     "limits.decode_vs_largest = 0 (allowed: a number in (0, 1]"),
    (lambda t: t.replace("prompt_tokens = 32", "prompt_tokens = 32\ndecode_vs_largest = true"),
     "limits.decode_vs_largest = True (allowed: a number in (0, 1]"),
])
def test_bad_profiles_give_one_clear_line_and_exit_2(tmp_path, capsys, edit, expected):
    f = _write(tmp_path, edit(GOOD.format(name="board")))
    with pytest.raises(ProfileError, match=None) as e:
        load_profile(f)
    assert expected in str(e.value) and str(f) in str(e.value)
    assert main(["profiles", "show", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.format(name="board").replace("memory_mb = 100", "memory_mb = -1").replace('"fp32"', '"int3"')
    text = text.replace("gemm_gflops = 10\n", "")
    with pytest.raises(ProfileError) as e:
        load_profile(_write(tmp_path, text))
    msg = str(e.value)
    assert "3 problem(s)" in msg and "memory_mb" in msg and "precision" in msg and "gemm_gflops" in msg


def test_cli_list_show_validate(capsys, tmp_path):
    assert main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in list_profiles())
    assert main(["profiles", "show", "raspberry-pi-5"]) == 0
    assert "ssh://pi@raspberrypi.local" in capsys.readouterr().out
    assert main(["profiles", "validate"]) == 0
    assert capsys.readouterr().out.count("ok ") == len(list_profiles())
    bad = _write(tmp_path, GOOD.format(name="board").replace("threads = 2", "threads = 0"))
    assert main(["profiles", "validate", "host", str(bad)]) == 2
    assert main(["profiles", "show", "no-such-device"]) == 2
    assert "unknown device profile 'no-such-device'" in capsys.readouterr().err
