"""The fault schedule: which service is killed when, with which signal, and for how long.

    schedule = FaultSchedule(agents=["provider-1", ...], oracles=["oracle-0", ...], seed=7,
                             kill_interval_s=20.0)
    for kill in schedule.kills():          # endless, the same sequence for the same seed
        ...                                # wait kill.after_s, kill kill.service, ...

Only the sequence is seeded: each kill's wait after the previous service is back, the service,
the signal and the down time. When the kills land in wall-clock time depends on how fast the
machine restarts a service, so two runs with one seed kill the same services in the same order
with the same signals, not at the same instants.

Every kind and every signal comes up early: kills alternate between a provider agent and an
oracle (which kind starts is seeded), and the signals are dealt from a shuffled deck of all
three, reshuffled once used up. So the first two kills are one agent and one oracle with
different signals, and the first three use every signal: a short soak can rely on that.

The node restart is seeded too (its down time); *when* it happens is the run's business (in
the middle of the jobs), since it depends on the load's progress, not on the clock.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["KILL_SIGNALS", "FaultSchedule", "PlannedKill"]

KILL_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


@dataclass(frozen=True)
class PlannedKill:
    """Wait `after_s` (from the previous service being back), send `signal` to `service`, keep it
    down `down_s` after it exited, then start it again with the same command."""

    after_s: float
    service: str
    kind: str  # "agent" or "oracle"
    signal: signal.Signals
    down_s: float


@dataclass(frozen=True)
class FaultSchedule:
    agents: Sequence[str]
    oracles: Sequence[str]
    seed: int
    kill_interval_s: float = 20.0  # mean wait between kills: uniform in [0.5, 1.5] x this
    min_down_s: float = 2.0
    max_down_s: float = 6.0
    node_down_s: tuple[float, float] = (2.0, 4.0)

    def __post_init__(self) -> None:
        if not self.agents or not self.oracles:
            raise ValueError("the schedule needs at least one agent and one oracle")
        if self.kill_interval_s <= 0 or not 0 < self.min_down_s <= self.max_down_s:
            raise ValueError(
                f"invalid schedule timings: interval {self.kill_interval_s}, down {self.min_down_s}..{self.max_down_s}"
            )

    def kills(self) -> Iterator[PlannedKill]:
        """The kills, in order, without end (the run stops taking them when its jobs are done)."""
        rng = random.Random(self.seed)
        kinds = ("agent", "oracle") if rng.random() < 0.5 else ("oracle", "agent")
        deck: list[signal.Signals] = []
        number = 0
        while True:
            if not deck:
                deck = list(KILL_SIGNALS)
                rng.shuffle(deck)
            kind = kinds[number % 2]
            service = rng.choice(self.agents if kind == "agent" else self.oracles)
            yield PlannedKill(
                after_s=round(self.kill_interval_s * rng.uniform(0.5, 1.5), 2),
                service=service,
                kind=kind,
                signal=deck.pop(),
                down_s=round(rng.uniform(self.min_down_s, self.max_down_s), 2),
            )
            number += 1

    def node_restart_down_s(self) -> float:
        """How long the node stays down at its restart (its own seeded stream)."""
        return round(random.Random(f"node-{self.seed}").uniform(*self.node_down_s), 2)
