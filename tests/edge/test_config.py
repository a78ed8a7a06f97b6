import pytest

from edge.config import PRESETS, ConfigError, MatFormerConfig


def test_presets_valid_and_widths():
    for name in PRESETS:
        cfg = MatFormerConfig.from_preset(name)
        w = cfg.widths
        assert list(w) == ["S", "M", "L", "XL"]
        assert w["XL"] == cfg.d_ff and w["S"] * 8 == cfg.d_ff


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*tiny"):
        MatFormerConfig.from_preset("huge")


def test_invalid_values_are_all_named():
    with pytest.raises(ConfigError) as e:
        MatFormerConfig(d_model=64, n_heads=3, d_ff=100, norm_eps=-1)
    msg = str(e.value)
    assert "n_heads=3" in msg and "d_ff=100" in msg and "norm_eps=-1" in msg


def test_non_positive_field():
    with pytest.raises(ConfigError, match=r"n_layers=0 \(allowed: an integer in \[1, 512\]"):
        MatFormerConfig(n_layers=0)


def test_round_trip_dict(tmp_path):
    cfg = MatFormerConfig.from_preset("tiny", ffn_sizes=(32, 64, 128, 256), spec=("S", "M", "L", "XL"))
    cfg.save(tmp_path / "c.json")
    assert MatFormerConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ConfigError, match="unknown config field"):
        MatFormerConfig.from_dict({**cfg.to_dict(), "bogus": 1})
