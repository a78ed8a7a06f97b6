"""The planner on synthetic cost tables where brute force knows the optimum."""

import itertools

import pytest

from edge.config import MatFormerConfig
from edge.plan.planner import PlanError, SearchSettings, pareto_frontier, plan
from edge.spec import is_monotone

CFG = MatFormerConfig.from_preset("tiny")  # 4 layers -> 4**4 = 256 specs
RANK = {"S": 0, "M": 1, "L": 2, "XL": 3}
LAYER_MS = {"S": 1.0, "M": 1.5, "L": 2.5, "XL": 4.5}
LAYER_MB = {"S": 2.0, "M": 3.0, "L": 5.0, "XL": 9.0}
# How much each layer's loss drops per granularity step: layer 1 matters most, so the optimum
# under a tight budget is non-monotone (wide in layer 1, narrow after it).
GAIN = [0.05, 0.4, 0.1, 0.2]


def costs(spec):
    return {"decode_ms_per_token": 2.0 + sum(LAYER_MS[g] for g in spec),
            "memory_mb": 10.0 + sum(LAYER_MB[g] for g in spec)}


def loss(spec):
    return 3.0 - sum(GAIN[i] * (1 - 0.5 ** RANK[g]) for i, g in enumerate(spec))


def brute_force(limits):
    feasible = [s for s in itertools.product(RANK, repeat=4) if all(costs(s)[k] <= v for k, v in limits.items())]
    return min(feasible, key=loss)


@pytest.mark.parametrize("limits", [
    {"decode_ms_per_token": 10.0, "memory_mb": 40.0},
    {"decode_ms_per_token": 12.0, "memory_mb": 30.0},
    {"decode_ms_per_token": 100.0, "memory_mb": 100.0},
    {"decode_ms_per_token": 8.5},
])
def test_finds_known_optimum(limits):
    p = plan(CFG, costs, loss, limits, SearchSettings(seed=1))
    best = brute_force(limits)
    assert p.chosen.spec == best and p.chosen.loss == pytest.approx(loss(best))
    assert all(c.costs[k] <= v for c in p.candidates for k, v in limits.items())  # only feasible scored
    assert p.best_uniform is None or p.chosen.loss <= p.best_uniform.loss


def test_beats_monotone_when_optimum_is_not_monotone():
    limits = {"decode_ms_per_token": 10.0}
    best = brute_force(limits)
    assert not is_monotone(best, CFG)
    p = plan(CFG, costs, loss, limits, SearchSettings(seed=0))
    assert p.chosen.source == "evolution"
    assert p.chosen.loss < min(c.loss for c in p.candidates if c.source == "monotone")


def test_loss_evaluated_once_per_spec():
    calls = []

    def counting_loss(spec):
        calls.append(spec)
        return loss(spec)

    plan(CFG, costs, counting_loss, {"decode_ms_per_token": 12.0})
    assert len(calls) == len(set(calls))


def test_infeasible_names_cheapest_costs():
    with pytest.raises(PlanError) as e:
        plan(CFG, costs, loss, {"decode_ms_per_token": 3.0, "memory_mb": 100.0})
    msg = str(e.value)
    assert "cheapest spec S" in msg and "decode_ms_per_token 6.0 vs limit 3 (over)" in msg
    assert "memory_mb 18.0 vs limit 100" in msg and "memory_mb 18.0 vs limit 100 (over)" not in msg


def test_fallback_when_memory_is_tight():
    p = plan(CFG, costs, loss, {"memory_mb": 30.0})
    assert p.chosen.costs["memory_mb"] > 0.7 * 30
    assert p.fallback is not None and p.fallback.costs["memory_mb"] <= 0.7 * 30
    roomy = plan(CFG, costs, loss, {"memory_mb": 1000.0})
    assert roomy.fallback is None


def test_pareto_frontier_is_monotone():
    p = plan(CFG, costs, loss, {"decode_ms_per_token": 100.0})
    front = pareto_frontier(p.candidates, "decode_ms_per_token")
    assert [c.costs["decode_ms_per_token"] for c in front] == sorted(c.costs["decode_ms_per_token"] for c in front)
    assert all(a.loss > b.loss for a, b in zip(front, front[1:]))
    for c in p.candidates:  # nothing beats the frontier in both
        assert any(f.loss <= c.loss and f.costs["decode_ms_per_token"] <= c.costs["decode_ms_per_token"] for f in front)


def test_frontier_plot(tmp_path):
    from edge.plan.plots import plot_frontier

    p = plan(CFG, costs, loss, {"decode_ms_per_token": 12.0, "memory_mb": 40.0})
    out = plot_frontier(p, tmp_path / "frontier.png", "synthetic")
    assert out.stat().st_size > 5000 and out.read_bytes()[:4] == b"\x89PNG"


def test_deep_model_scores_the_monotone_specs_nearest_the_limit():
    """30 layers: 5,456 monotone specs. Enumerated in order, the first 160 are S-heavy and cheap;
    the planner scores the feasible ones nearest the limit instead and finds a much wider spec."""
    deep = MatFormerConfig.from_preset("tiny", n_layers=30)

    def deep_costs(spec):
        return {"decode_ms_per_token": 2.0 + sum(LAYER_MS[g] for g in spec)}

    def deep_loss(spec):
        return 3.0 - sum(0.01 * (1 - 0.5 ** RANK[g]) for g in spec)

    limits = {"decode_ms_per_token": 2.0 + 30 * 2.5}  # all-L fits exactly
    p = plan(deep, deep_costs, deep_loss, limits, SearchSettings(seed=0, generations=0))
    monotone = [c for c in p.candidates if c.source == "monotone"]
    assert 0 < len(monotone) <= SearchSettings().max_monotone
    assert all(is_monotone(c.spec, deep) for c in monotone)
    assert min(c.costs["decode_ms_per_token"] for c in monotone) > 0.9 * limits["decode_ms_per_token"]
    assert p.chosen.loss <= deep_loss(("L",) * 30)  # at least as good as the best uniform spec
    assert p.chosen.costs["decode_ms_per_token"] <= limits["decode_ms_per_token"]
