"""A latency controller for elastic artifacts: hold a decode target (ms/token) by moving along
the member list (cheapest first) as measured decode times change.

Down one member as soon as the recent pace exceeds the target (a busy device must not wait);
up one member only when the recent pace would still fit the target after the step up, with a
margin (``up_margin``), and only after ``patience`` steps at the current member: a step up that
immediately overshoots would oscillate. The pace is the mean of the recent decode times without
the largest: what a reader sees, preempted tokens included (a median ignores preemption that hits
fewer than half the tokens, and then the pace misses the target while the median holds it), but
not one stall alone (a page fault, a GC pause). The time after a step up is predicted from the current
time and the members' cost *ratio*, which load scales alike: from ``cost`` (ms/token per member
on an idle device: a cost table's prediction or one measurement) where given, else from an
exponential average of the times seen at each member, forgotten after ``forget`` steps: a time
seen under load that has since gone would otherwise keep the controller low for good.

A step up that fails (a step down follows within ``patience`` steps) doubles the wait before the
next one, up to ``max_wait`` steps; one that holds resets it. Under a lasting load, where the
member above no longer fits, probing it every ``patience`` steps put a burst of slow tokens into
every other window (measured: 42% of 16-token windows within the target); backing off probes
less and less often, and the controller returns up within ``max_wait`` steps once the load goes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence


def pace(times: Sequence[float]) -> float:
    """Mean decode time without the largest one (the plain mean of fewer than 3 times)."""
    t = sorted(times)
    return sum(t[:-1]) / (len(t) - 1) if len(t) >= 3 else sum(t) / len(t)


@dataclass
class LatencyController:
    members: Sequence[str]  # cheapest first
    target_ms: float
    window: int = 8  # recent decode times the decisions look at
    up_margin: float = 0.85  # step up only if the predicted time is below margin * target
    patience: int = 16  # steps at a member before a step up is considered
    forget: int = 64  # steps after which a member's seen time no longer predicts (ratio 1.5 instead)
    max_wait: int = 256  # the longest wait before a step up, after failed ones (doubling from patience)
    cost: dict[str, float] = field(default_factory=dict)  # idle ms/token per member (ratios only)
    index: int = -1  # current member (default: the largest)
    history: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a controller needs at least one member")
        if self.target_ms <= 0:
            raise ValueError(f"target_ms={self.target_ms}: need a positive decode target")
        self.index = self.index % len(self.members)
        self._recent: deque[float] = deque(maxlen=self.window)
        self._since_switch = 0
        self._wait = self.patience  # steps at a member before a step up; doubles after a failed one
        self._probing = False  # the last switch was a step up that has not yet held `patience` steps
        self._seen: dict[str, tuple[float, int]] = {}  # (average time, last step) per member, for ratios
        self._step = 0

    @property
    def member(self) -> str:
        return self.members[self.index]

    def observe(self, ms: float) -> str:
        """Record one decode time of the current member; return the member for the next token."""
        m = self.member
        self.history.append((m, ms))
        self._recent.append(ms)
        self._since_switch += 1
        self._step += 1
        prev = self._seen.get(m)
        self._seen[m] = (ms if prev is None else 0.8 * prev[0] + 0.2 * ms, self._step)
        if len(self._recent) < min(3, self.window):
            return m
        now = pace(self._recent)
        if self._probing and self._since_switch >= self.patience:  # the step up held
            self._probing, self._wait = False, self.patience
        if now > self.target_ms and self.index > 0:
            if self._probing:  # the step up failed: wait twice as long before the next
                self._wait = min(2 * self._wait, self.max_wait)
            self._switch(self.index - 1)
            self._probing = False
        elif self.index + 1 < len(self.members) and self._since_switch >= self._wait:
            up = self.members[self.index + 1]
            if now * self._ratio(m, up) < self.up_margin * self.target_ms:
                self._switch(self.index + 1)
                self._probing = True
        return self.member

    def _ratio(self, m: str, up: str) -> float:
        """Cost of ``up`` relative to ``m`` (1.5 when nothing is known about ``up``)."""
        if m in self.cost and up in self.cost:
            return self.cost[up] / max(self.cost[m], 1e-9)
        if up in self._seen and self._step - self._seen[up][1] <= self.forget:
            return self._seen[up][0] / max(self._seen[m][0], 1e-9)
        return 1.5

    def _switch(self, index: int) -> None:
        self.index = index
        self._recent.clear()
        self._since_switch = 0

    def within_target(self) -> float:
        """Fraction of observed tokens whose decode time met the target."""
        if not self.history:
            return 0.0
        return sum(ms <= self.target_ms for _, ms in self.history) / len(self.history)
