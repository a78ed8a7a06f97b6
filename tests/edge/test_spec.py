import random

import pytest

from edge.config import MatFormerConfig
from edge.spec import (SpecError, compact_spec, flops_per_token, format_spec, is_monotone, monotone_family, param_count,
                       parse_spec, random_spec, spec_widths)


def test_parse_forms(tiny_config):
    assert parse_spec("XL", tiny_config) == ("XL",) * 4
    assert parse_spec("s, m ,L,xl", tiny_config) == ("S", "M", "L", "XL")
    assert parse_spec("S*2,L*2", tiny_config) == ("S", "S", "L", "L")
    assert parse_spec(["M", "M", "M", "XL"], tiny_config) == ("M", "M", "M", "XL")


@pytest.mark.parametrize("bad", ["", "XXL", "S,M", "S,M,L,XL,XL", "S*0,M*4", "S*x", "S,,M,L"])
def test_parse_rejects(tiny_config, bad):
    with pytest.raises(SpecError) as e:
        parse_spec(bad, tiny_config)
    assert "allowed" in str(e.value) or "N >= 1" in str(e.value)


def test_format_round_trip(tiny_config):
    for spec in monotone_family(tiny_config):
        assert parse_spec(format_spec(spec), tiny_config) == spec
    assert format_spec(("L",) * 4) == "L"


def test_compact_spec_reads_back(tiny_config):
    deep = MatFormerConfig.from_preset("tiny", n_layers=30)
    rng = random.Random(0)
    for _ in range(50):
        spec = tuple(sorted(random_spec(deep, rng)))  # long runs
        assert parse_spec(compact_spec(spec), deep) == spec and len(compact_spec(spec)) < len(format_spec(spec))
    assert compact_spec(("XL", "M", "M", "M", "M", "L")) == "XL,M*4,L" == compact_spec("XL,M,M,M,M,L")
    assert compact_spec(("S", "S", "M", "L")) == "S,S,M,L" and compact_spec(("M",) * 4) == "M"
    for spec in monotone_family(tiny_config):
        assert parse_spec(compact_spec(spec), tiny_config) == spec


def test_monotone_family(tiny_config):
    fam = monotone_family(tiny_config)
    # multisets of size 4 from 4 granularities: C(7, 3) = 35
    assert len(fam) == 35 and len(set(fam)) == 35
    assert all(is_monotone(s, tiny_config) for s in fam)
    assert not is_monotone(("XL", "S", "S", "S"), tiny_config)


def test_widths_params_flops_grow(tiny_config):
    assert spec_widths(("S", "M", "L", "XL"), tiny_config) == [32, 64, 128, 256]
    sizes = [param_count((g,) * 4, tiny_config) for g in "S M L XL".split()]
    flops = [flops_per_token((g,) * 4, tiny_config) for g in "S M L XL".split()]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert flops == sorted(flops) and flops_per_token(("XL",) * 4, tiny_config, context=10) > flops[-1]
    # each S->XL step in one layer adds exactly 3 * d_model * (width difference) parameters
    d = tiny_config.d_model
    assert param_count(("XL", "S", "S", "S"), tiny_config) - sizes[0] == 3 * d * (256 - 32)


def test_custom_granularities():
    cfg = MatFormerConfig.from_preset("tiny", granularity_fractions=(0.5, 1.0), granularity_names=("half", "full"))
    assert parse_spec("HALF", cfg) == ("half",) * 4
    assert cfg.widths == {"half": 128, "full": 256}
