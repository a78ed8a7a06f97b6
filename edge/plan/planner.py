"""The planner: the most accurate Mix'n'Match spec whose predicted costs fit a device's limits.

Candidates come from three places: the uniform specs (S/M/L/XL), the paper's monotone family
(granularity non-decreasing with depth) and an evolutionary search over all per-layer specs
(OFA/HAT style: population, mutation, crossover, constraint filter). Quality is *measured*: the
validation loss of each candidate on held-out tokens, through a cache keyed by spec.

Costs are any function ``spec -> {limit name: value}`` (the profiler's predictor in practice);
limits are ``{limit name: maximum}``. Only feasible specs are ever scored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from edge.config import MatFormerConfig
from edge.errors import MatEdgeError
from edge.spec import Spec, format_spec, monotone_family, param_count, uniform_specs

CostFn = Callable[[Spec], dict[str, float]]
LossFn = Callable[[Spec], float]


class PlanError(MatEdgeError):
    """No spec fits the limits; the message gives the cheapest spec's costs against each limit."""


@dataclass
class Candidate:
    spec: Spec
    loss: float
    costs: dict[str, float]
    params: int
    source: str  # "uniform", "monotone" or "evolution"

    def row(self) -> list:
        return [format_spec(self.spec), self.source, self.params, self.loss, *self.costs.values()]


@dataclass
class SearchSettings:
    population: int = 16
    generations: int = 6
    mutation_prob: float = 0.25
    elite: int = 6
    max_evaluations: int = 160  # loss evaluations (cached ones are free)
    # Monotone specs scored at most: all of them for the default model (84 for 6 layers and 4
    # granularities); a 30-layer model has 5,456, so only the feasible ones nearest the limits.
    max_monotone: int = 96
    seed: int = 0


@dataclass
class Plan:
    chosen: Candidate
    best_uniform: Candidate | None
    fallback: Candidate | None
    candidates: list[Candidate] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)

    def frontier(self, cost: str) -> list[Candidate]:
        return pareto_frontier(self.candidates, cost)


def fits(costs: dict[str, float], limits: dict[str, float]) -> bool:
    return all(costs[k] <= v for k, v in limits.items())


def pareto_frontier(cands: Sequence[Candidate], cost: str) -> list[Candidate]:
    """Candidates no other candidate beats in both loss and ``cost``, sorted by cost."""
    front, best = [], float("inf")
    for c in sorted(cands, key=lambda c: (c.costs[cost], c.loss)):
        if c.loss < best:
            front.append(c)
            best = c.loss
    return front


class _Scorer:
    """Scores feasible specs once each; remembers every candidate it has seen."""

    def __init__(self, config, cost_fn: CostFn, loss_fn: LossFn, limits, budget: int):
        self.config, self.cost_fn, self.loss_fn, self.limits = config, cost_fn, loss_fn, limits
        self.seen: dict[Spec, Candidate | None] = {}
        self.budget = budget

    def score(self, spec: Spec, source: str) -> Candidate | None:
        if spec in self.seen:
            return self.seen[spec]
        costs = self.cost_fn(spec)
        cand = None
        if fits(costs, self.limits) and self.budget > 0:
            self.budget -= 1
            cand = Candidate(spec, float(self.loss_fn(spec)), costs, param_count(spec, self.config), source)
        self.seen[spec] = cand
        return cand

    @property
    def candidates(self) -> list[Candidate]:
        return [c for c in self.seen.values() if c is not None]


def _mutate(spec: Spec, names: Sequence[str], p: float, rng: random.Random) -> Spec:
    return tuple(rng.choice(names) if rng.random() < p else g for g in spec)


def _crossover(a: Spec, b: Spec, rng: random.Random) -> Spec:
    return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))


def evolve(scorer: _Scorer, settings: SearchSettings, rng: random.Random) -> None:
    """OFA/HAT-style evolution seeded with the best feasible candidates found so far."""
    names = scorer.config.granularity_names
    for _ in range(settings.generations):
        parents = sorted(scorer.candidates, key=lambda c: c.loss)[: settings.elite]
        if not parents or scorer.budget <= 0:
            return
        children, tries = [], 0
        while len(children) < settings.population and tries < settings.population * 20:
            tries += 1
            if rng.random() < 0.5 and len(parents) > 1:
                a, b = rng.sample(parents, 2)
                child = _mutate(_crossover(a.spec, b.spec, rng), names, settings.mutation_prob / 2, rng)
            else:
                child = _mutate(rng.choice(parents).spec, names, settings.mutation_prob, rng)
            if child not in scorer.seen and child not in children:
                children.append(child)
        for child in children:
            scorer.score(child, "evolution")


def infeasible_message(config: MatFormerConfig, cost_fn: CostFn, limits: dict[str, float]) -> str:
    cheapest = uniform_specs(config)[config.granularity_names[0]]
    costs = cost_fn(cheapest)
    parts = [f"{k} {costs[k]:.1f} vs limit {v:g}{' (over)' if costs[k] > v else ''}" for k, v in limits.items()]
    return (f"no spec fits the limits; the cheapest spec {format_spec(cheapest)} is predicted at "
            + ", ".join(parts) + " (raise the limits, lower the precision, or shorten the context)")


def utilisation(costs: dict[str, float], limits: dict[str, float]) -> float:
    """The largest share of a limit that ``costs`` use (1.0: exactly at the binding limit)."""
    return max((costs[k] / v for k, v in limits.items() if v > 0), default=0.0)


def monotone_candidates(config: MatFormerConfig, cost_fn: CostFn, limits: dict[str, float], cap: int) -> list[Spec]:
    """The monotone family in its own order when it has at most ``cap`` specs; else the ``cap``
    feasible ones that use the most of the limits. Enumerated in order, a deep model's family
    spends the whole loss budget on its first (S-heavy, cheapest) specs; a wider submodel is
    nearly always the more accurate one, so those nearest the limits are the ones worth scoring."""
    family = monotone_family(config)
    if len(family) <= cap:
        return family
    scored = [(utilisation(c, limits), s) for s in family if fits(c := cost_fn(s), limits)]
    keep = {s for _, s in sorted(scored, key=lambda t: -t[0])[:cap]}
    return [s for s in family if s in keep]  # family order: neighbours share prefixes in SpecScorer


def plan(config: MatFormerConfig, cost_fn: CostFn, loss_fn: LossFn, limits: dict[str, float],
         settings: SearchSettings | None = None, monotone: bool = True, fallback_ratio: float = 0.7) -> Plan:
    """Search uniform, monotone and evolved specs; return the lowest-loss feasible one."""
    settings = settings or SearchSettings()
    scorer = _Scorer(config, cost_fn, loss_fn, limits, settings.max_evaluations)
    uniforms = [scorer.score(s, "uniform") for s in uniform_specs(config).values()]
    if not scorer.candidates:
        raise PlanError(infeasible_message(config, cost_fn, limits))
    if monotone:
        for spec in monotone_candidates(config, cost_fn, limits, settings.max_monotone):
            scorer.score(spec, "monotone")
    evolve(scorer, settings, random.Random(settings.seed))
    cands = scorer.candidates
    chosen = min(cands, key=lambda c: c.loss)
    feasible_uniform = [u for u in uniforms if u is not None]
    best_uniform = min(feasible_uniform, key=lambda c: c.loss) if feasible_uniform else None
    return Plan(chosen, best_uniform, choose_fallback(cands, chosen, limits, fallback_ratio), cands, limits)


def choose_fallback(cands: list[Candidate], chosen: Candidate, limits: dict[str, float],
                    ratio: float) -> Candidate | None:
    """When the chosen spec uses over ``ratio`` of the memory limit, the best spec that stays
    within ``ratio`` of it, so an app can step down at run time under memory pressure."""
    key = "memory_mb"
    if key not in limits or chosen.costs[key] <= ratio * limits[key]:
        return None
    smaller = [c for c in cands if c.costs[key] <= ratio * limits[key]]
    return min(smaller, key=lambda c: c.loss) if smaller else min(cands, key=lambda c: c.costs[key])
