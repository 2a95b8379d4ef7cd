"""The soak's fault schedule: reproducible from its seed, and every kind and signal early."""

from __future__ import annotations

import itertools
import signal

import pytest

from gpumarket.soak.schedule import KILL_SIGNALS, FaultSchedule

AGENTS = ("provider-1", "provider-2", "provider-3")
ORACLES = ("oracle-0", "oracle-1", "oracle-2")


def first(schedule: FaultSchedule, count: int) -> list:
    return list(itertools.islice(schedule.kills(), count))


def test_the_same_seed_gives_the_same_kills_and_another_seed_others() -> None:
    schedule = FaultSchedule(AGENTS, ORACLES, seed=11, kill_interval_s=10)
    assert first(schedule, 20) == first(FaultSchedule(AGENTS, ORACLES, seed=11, kill_interval_s=10), 20)
    assert first(schedule, 20) != first(FaultSchedule(AGENTS, ORACLES, seed=12, kill_interval_s=10), 20)
    assert schedule.node_restart_down_s() == FaultSchedule(AGENTS, ORACLES, seed=11).node_restart_down_s()


@pytest.mark.parametrize("seed", range(30))
def test_kinds_alternate_and_the_first_three_kills_use_every_signal(seed: int) -> None:
    schedule = FaultSchedule(AGENTS, ORACLES, seed=seed, kill_interval_s=10, min_down_s=2, max_down_s=6)
    kills = first(schedule, 12)
    assert {kills[0].kind, kills[1].kind} == {"agent", "oracle"}
    assert all(a.kind != b.kind for a, b in itertools.pairwise(kills))
    assert {kill.signal for kill in kills[:3]} == set(KILL_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGKILL}
    for kill in kills:
        assert kill.service in (AGENTS if kill.kind == "agent" else ORACLES)
        assert 2 <= kill.down_s <= 6 and 5 <= kill.after_s <= 15


def test_a_schedule_needs_both_kinds_and_sane_timings() -> None:
    with pytest.raises(ValueError):
        FaultSchedule((), ORACLES, seed=1)
    with pytest.raises(ValueError):
        FaultSchedule(AGENTS, ORACLES, seed=1, min_down_s=5, max_down_s=2)
