"""The job loop's scheduling: each job stepped when it falls due, earliest first, by one pool of
workers, each job in one worker at a time (gpumarket.oracle.schedule, JobMonitor.run and tick).

The schedule's own tests pass explicit times. The loop's tests run real parts: provider agent
doubles over HTTP on loopback (tests/oracle/doubles.py), the SQLite decision store, the
oracle's HTTP API; the chain is MarketDouble, and a challenge is an HTTP exchange with the
agent (its /health, as slow as the agent makes it) that then passes: what a challenge measures
is test_trust.py's and tests/oracle_service's business. Nothing asserts how fast real work goes,
only what happened before what, with generous bounds (a loaded 2-core machine must not flake).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpumarket.agentapi.client import HttpTimeouts, ProviderApi
from gpumarket.agentapi.errors import ProviderUnreachable
from gpumarket.chain.events import JobAccepted, JobSettled, LogMeta
from gpumarket.chain.keys import test_account, test_oracle
from gpumarket.oracle.api import OracleAPI
from gpumarket.oracle.challenge import ChallengeConfig, ChallengeOutcome
from gpumarket.oracle.jobs import JobConfig, JobMonitor, JobStep
from gpumarket.oracle.schedule import DueSchedule, Taken
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.signing.eip712 import Domain, Outcome

from .doubles import AgentDouble, ContractDouble, MarketDouble, running_job

# ---------------------------------------------------------------------- the schedule, explicit times


def step_all(schedule: DueSchedule[str], now: float, next_due: float = math.inf) -> list[Taken[str]]:
    """Steps what is due at ``now``; each key is next due at ``next_due``. Returns what was taken."""
    taken: list[Taken[str]] = []

    def step(item: Taken[str]) -> float:
        taken.append(item)
        return next_due

    schedule.run_due(now, step)
    return taken


def test_keys_are_taken_earliest_due_first() -> None:
    schedule: DueSchedule[str] = DueSchedule()
    for key, due in [("c", 3.0), ("a", 1.0), ("x", 5.0), ("b", 2.0), ("y", 5.0)]:
        schedule.add(key, due)
    schedule.add("c", 9.0)  # already followed: a later due does not delay it
    schedule.add("x", 4.0)  # ... an earlier one counts
    assert [t.key for t in step_all(schedule, 2.5)] == ["a", "b"]
    assert [(t.key, t.due) for t in step_all(schedule, 10.0)] == [("c", 3.0), ("x", 4.0), ("y", 5.0)]
    assert step_all(schedule, 1e9) == []  # each is next due at inf: not until hurried
    assert len(schedule) == 5 and "a" in schedule


def test_a_key_is_in_one_step_at_a_time_and_leaves_once_its_step_is_done() -> None:
    dropped: list[str] = []
    schedule: DueSchedule[str] = DueSchedule(on_drop=dropped.append)
    schedule.add("k", 0.0)

    def step(item: Taken[str]) -> float:
        assert step_all(schedule, 100.0) == []  # held: nothing takes it again meanwhile
        schedule.hurry("k", 1.0)  # a hurry waits for the step to end
        schedule.remove("k")  # and so does a removal
        assert "k" not in schedule and dropped == []
        return 50.0

    schedule.run_due(0.0, step)
    assert dropped == ["k"] and len(schedule) == 0
    schedule.remove("k")  # idempotent
    assert dropped == ["k"]

    schedule.add("j", 0.0)

    def readded(item: Taken[str]) -> float:
        schedule.remove("j")
        schedule.add("j", 7.0)  # followed again before the step ended: it stays
        return 50.0

    schedule.run_due(0.0, readded)
    assert dropped == ["k"] and [t.due for t in step_all(schedule, 10.0)] == [7.0]


def test_hurry_and_remove() -> None:
    dropped: list[str] = []
    schedule: DueSchedule[str] = DueSchedule(on_drop=dropped.append)
    schedule.add("a", 10.0)
    schedule.hurry("b", 0.0)  # not followed: stays out
    assert "b" not in schedule
    schedule.hurry("a", 4.0)
    schedule.hurry("a", 8.0)  # later than its due: no change
    assert [t.due for t in step_all(schedule, 5.0)] == [4.0]
    schedule.remove("a")
    assert dropped == ["a"] and "a" not in schedule and step_all(schedule, 1e9) == []


def test_an_error_in_one_step_puts_every_key_taken_back() -> None:
    schedule: DueSchedule[str] = DueSchedule()
    schedule.add("a", 1.0)
    schedule.add("b", 2.0)

    def step(item: Taken[str]) -> float:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        schedule.run_due(5.0, step)
    assert [t.key for t in step_all(schedule, 5.0)] == ["a", "b"]  # both back, due again


def test_lag_is_how_late_steps_start() -> None:
    schedule: DueSchedule[str] = DueSchedule(lag_window_s=20.0)
    schedule.add("a", 10.0)
    assert schedule.lag(5.0) == 0.0  # not due yet
    assert schedule.lag(25.0) == 15.0  # due 15 s ago and still waiting
    [taken] = step_all(schedule, 25.0, next_due=100.0)
    assert taken.lag == 15.0
    assert schedule.lag(30.0) == 15.0  # a step started 15 s late within the last 20 s
    assert schedule.lag(46.0) == 0.0  # the window has passed and nothing is overdue
    # A due time already past when the step ends counts from then: a step that outlasts its own
    # interval is not lateness of the schedule.
    schedule = DueSchedule(lag_window_s=1.0)
    schedule.add("b", 0.0)
    step_all(schedule, 50.0, next_due=-math.inf)
    assert schedule.lag(60.0) == 10.0


def test_the_heap_stays_proportional_to_the_keys() -> None:
    schedule: DueSchedule[int] = DueSchedule()
    for key in range(10):
        schedule.add(key, 1e6)
    for i in range(10_000):
        schedule.hurry(i % 10, 1e6 - i)  # each leaves a stale entry behind
        if i % 7 == 0:
            schedule.remove(i % 10)
            schedule.add(i % 10, 1e6)
    assert len(schedule) == 10 and len(schedule._heap) <= 2 * 10 + 64


def test_the_pool_steps_every_key_and_never_one_key_twice_at_once() -> None:
    schedule: DueSchedule[int] = DueSchedule()
    lock = threading.Lock()
    inside: set[int] = set()
    overlaps: list[int] = []
    steps = dict.fromkeys(range(8), 0)

    def step(item: Taken[int]) -> float:
        with lock:
            if item.key in inside:
                overlaps.append(item.key)
            inside.add(item.key)
        time.sleep(0.005)
        with lock:
            inside.discard(item.key)
            steps[item.key] += 1
        return -math.inf  # due again at once: the workers race for every key

    for key in steps:
        schedule.add(key, 0.0)
    stop = threading.Event()
    pool = threading.Thread(target=schedule.serve, args=(step,), kwargs={"workers": 4, "stop": stop})
    pool.start()
    try:
        wait_for(lambda: min(steps.values()) >= 10, 60, "every key stepped ten times")
    finally:
        stop.set()
        pool.join(60)
    assert not pool.is_alive() and overlaps == []


# ---------------------------------------------------------------------- the job loop on real HTTP

DOMAIN = Domain(chain_id=1337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
KEY = test_oracle(0)
MEMBERS = [test_oracle(i).address for i in range(3)]
IMAGE = "ghcr.io/team/train@sha256:" + "ab" * 32


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
    return value


def http_challenge(endpoint: str, *args: object, **kwargs: object) -> ChallengeOutcome:
    """A challenge as the loop sees it: an exchange with the agent that lasts as long as the agent
    takes to answer (its /health), then valid work far above any floor; no answer if none came."""
    try:
        with ProviderApi(endpoint, HttpTimeouts(5.0, 90.0)) as api:
            api.health()
    except ProviderUnreachable as exc:
        return ChallengeOutcome(0.0, error=str(exc), unreachable=True)
    return ChallengeOutcome(10.0**6)


@dataclass
class World:
    """One oracle's job loop following jobs at agent doubles (one provider and agent per job)."""

    monitor: JobMonitor
    store: DecisionStore
    agents: dict[int, AgentDouble]
    contract: ContractDouble


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    """Builder: ``make_world(job_ids, config)``, jobs running at agents that answer; the store
    watches ``watched`` of them (default: all) as if accepted before the loop started; the
    committee is ``members`` (a majority signs)."""
    made: list[World] = []

    def make(
        job_ids: list[int],
        config: JobConfig,
        *,
        watched: list[int] | None = None,
        members: tuple[str, ...] = tuple(MEMBERS),
        clock: Callable[[], float] = time.time,
        db: Path | None = None,
        agents: dict[int, AgentDouble] | None = None,
        challenge: Callable[..., ChallengeOutcome] = http_challenge,
    ) -> World:
        store = DecisionStore.open(db or tmp_path / f"oracle-{len(made)}.sqlite", DOMAIN, KEY.address)
        store.set_committee(1, members, len(members) // 2 + 1)
        started = int(time.time()) - 5
        providers = {job_id: test_account(job_id).address for job_id in job_ids}
        if agents is None:
            agents = {job_id: AgentDouble(health={"status": "ok"}) for job_id in job_ids}
            for job_id, agent in agents.items():
                agent.report(job_id, IMAGE, "running", started_at=started)
        for job_id in job_ids if watched is None else watched:
            store.watch_job(job_id, providers[job_id], started)
        market = MarketDouble(
            {job_id: running_job(job_id, providers[job_id], started) for job_id in job_ids},
            {providers[job_id]: agents[job_id].url for job_id in job_ids},
        )
        contract = ContractDouble(DOMAIN, 1, list(members), len(members) // 2 + 1)
        monitor = JobMonitor(
            store, OracleSigner(store, KEY), market, [], contract, config=config, clock=clock, challenge=challenge
        )
        world = World(monitor, store, agents, contract)
        made.append(world)
        return world

    yield make
    agents = {id(agent): agent for world in made for agent in world.agents.values()}
    for agent in agents.values():
        agent.close()
    for world in made:
        world.store.close()


@contextmanager
def running(world: World) -> Iterator[None]:
    """The loop on its pool (as the service runs it) until the block ends; hanging agents are
    let go first, so that no worker is left waiting on one."""
    stop = threading.Event()
    thread = threading.Thread(target=world.monitor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        for agent in world.agents.values():
            if agent.health_gate is not None:
                agent.health_gate.set()
        stop.set()
        thread.join(60)
    assert not thread.is_alive()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def the_step(steps: list[JobStep]) -> JobStep:
    [step] = steps
    return step


def test_a_challenge_that_hangs_delays_no_other_job(make_world) -> None:
    """Job 1's agent holds its start challenge for as long as the test likes; the other jobs are
    polled on meanwhile, and nobody else takes job 1 while its step hangs."""
    world = make_world([1, 2, 3, 4], JobConfig(poll_interval_s=0.2, heartbeat_interval_s=3600.0, workers=4))
    slow = world.agents[1]
    slow.health_gate = threading.Event()
    others = [world.agents[job_id] for job_id in (2, 3, 4)]
    with running(world):
        wait_for(lambda: slow.in_flight == 1, 30, "job 1's start challenge hanging at its agent")
        before = [agent.status_requests for agent in others]
        wait_for(
            lambda: all(agent.status_requests >= polls + 5 for agent, polls in zip(others, before, strict=True)),
            60,
            "five more polls of every other job",
        )
        assert slow.in_flight == 1 and slow.status_requests == 0  # still hanging; nobody polled job 1
        slow.health_gate.set()
        wait_for(lambda: slow.status_requests >= 3, 60, "job 1 polled once its challenge returned")
    assert sorted(world.monitor.followed) == [1, 2, 3, 4]
    assert all(agent.max_in_flight == 1 for agent in world.agents.values())  # one worker per job


def test_lag_is_measured_and_reported_in_metrics_and_health(make_world, caplog) -> None:
    """One worker, two jobs: while job 1's challenge hangs, job 2 waits past its due time; the
    loop says it is behind (/metrics, /health, the log), and says it no longer is once it caught up."""
    caplog.set_level(logging.WARNING, logger="gpumarket.oracle.jobs")
    config = JobConfig(poll_interval_s=0.2, heartbeat_interval_s=3600.0, workers=1, max_lag_s=1.0)
    world = make_world([1, 2], config)
    world.agents[1].health_gate = threading.Event()
    metrics = world.monitor.signer.metrics
    api = OracleAPI(world.store, world.monitor.signer, metrics).start()
    api.add_health_check("job_loop", world.monitor.health)
    try:
        with running(world):
            wait_for(lambda: world.agents[1].in_flight == 1, 30, "the one worker held by job 1's challenge")
            health = wait_for(
                lambda: (body := json.loads(get(f"{api.url}/health")))["status"] == "degraded" and body,
                60,
                "/health degraded",
            )
            loop = health["job_loop"]
            assert loop["behind"] is True and loop["lag_s"] > 1.0
            assert (loop["followed"], loop["workers"], loop["max_lag_s"]) == (2, 1, 1.0)
            text = get(f"{api.url}/metrics")
            assert metric(text, "gpumarket_oracle_job_lag_seconds") > 1.0
            assert metric(text, "gpumarket_oracle_jobs_followed") == 2
            assert world.agents[2].status_requests == 0  # job 2 really waited
            world.agents[1].health_gate.set()
            wait_for(lambda: world.agents[2].status_requests >= 3, 60, "job 2 polled once the worker was free")
            health = wait_for(
                lambda: (body := json.loads(get(f"{api.url}/health")))["status"] == "ok" and body, 60, "caught up"
            )
            assert health["job_loop"]["behind"] is False
            assert metric(get(f"{api.url}/metrics"), "gpumarket_oracle_job_steps_total", action="polled") >= 3
    finally:
        api.stop()
    assert "the job loop is behind: job 2's step started" in caplog.text


def accepted(job_id: int, provider: str, started_at: int) -> JobAccepted:
    return JobAccepted(
        meta=LogMeta("0x" + "11" * 20, job_id, b"\x01" * 32, "0x" + "ab" * 32, job_id),
        job_id=job_id,
        provider=provider,
        price_per_gpu_second=1,
        collateral=1,
        started_at=started_at,
    )


def settled(job_id: int, provider: str) -> JobSettled:
    return JobSettled(
        meta=LogMeta("0x" + "11" * 20, 100 + job_id, b"\x02" * 32, "0x" + "cd" * 32, 0),
        job_id=job_id,
        provider=provider,
        outcome=Outcome.COMPLETED,
        gpu_seconds=1,
        provider_payment=1,
        protocol_fee=0,
        client_refund=0,
        slashed=0,
        result_hash=b"\x00" * 32,
        evidence_hash=b"\x00" * 32,
    )


def test_jobs_come_and_go_by_events_and_the_store_is_read_once(make_world, monkeypatch) -> None:
    world = make_world([1, 2], JobConfig(poll_interval_s=1.0), watched=[1])
    monitor, store = world.monitor, world.store
    reads: list[int] = []
    read = store.watched_jobs
    monkeypatch.setattr(store, "watched_jobs", lambda: reads.append(1) or read())
    now = time.time()
    assert [step.job_id for step in monitor.tick(now)] == [1]  # adopted from the store
    job_2 = world.monitor.market.get_job(2)
    monitor.handle(accepted(2, job_2.provider, job_2.started_at))
    assert [watched.job_id for watched in read()] == [1, 2]
    assert sorted(step.job_id for step in monitor.tick(now + 10)) == [1, 2]
    assert monitor.followed == [1, 2]
    monitor.handle(settled(1, world.monitor.market.get_job(1).provider))
    assert monitor.followed == [2] and [watched.job_id for watched in read()] == [2]
    assert [step.job_id for step in monitor.tick(now + 20)] == [2]
    assert reads == [1]  # the store's watched jobs, read at the start only
    assert metric(monitor.signer.metrics.render(), "gpumarket_oracle_jobs_followed") == 1


def test_a_restarted_loop_adopts_the_stored_jobs_and_settles_what_it_decided(make_world, tmp_path) -> None:
    """A job decided just before the oracle stopped: the loop on the same database follows it
    again from the store and only settles it (the agent is asked nothing more). A committee of
    this oracle alone, so that its own signature is the quorum."""
    job_id, alone = 1, (KEY.address,)
    db = tmp_path / "restarted.sqlite"
    first = make_world([job_id], JobConfig(poll_interval_s=1.0), members=alone, db=db)
    agent = first.agents[job_id]
    now = time.time()
    assert the_step(first.monitor.tick(now)).action == "polled"
    agent.report(job_id, IMAGE, "lost", started_at=now - 5)
    decided = the_step(first.monitor.tick(now + 1))
    assert decided.action == "decided" and decided.detail.startswith("FAILED: the agent reports the job lost")
    decision = first.store.job_decision(job_id)
    first.store.close()
    asked = (agent.status_requests, agent.health_requests)

    second = make_world([job_id], JobConfig(poll_interval_s=1.0), members=alone, db=db, agents=first.agents, watched=[])
    step = the_step(second.monitor.tick())
    assert step.action == "submitted" and second.monitor.followed == [job_id]
    assert second.contract.settled[job_id] == decision.report
    assert second.store.job_decision(job_id).digest == decision.digest
    assert (agent.status_requests, agent.health_requests) == asked


def test_the_loops_own_lateness_does_not_make_an_agent_silent(make_world) -> None:
    """The oracle's clock jumps as a loop far behind would see it: a heartbeat due long ago that
    starts late is simply run; an agent that misses one try before such a gap and two after it is
    not silent (nobody asked it in between); one that stays down while the loop keeps time is."""
    clock = [1000.0]
    config = JobConfig(poll_interval_s=1.0, heartbeat_interval_s=10.0, silent_after_s=30.0, status_timeout_s=5.0)
    world = make_world([1], config, clock=lambda: clock[0])
    monitor, agent = world.monitor, world.agents[1]

    def tick(at: float) -> JobStep:
        clock[0] = at
        return the_step(monitor.tick())

    assert tick(1000.0).action == "polled"  # start and first heartbeat challenges passed
    challenges = agent.health_requests
    assert tick(1500.0).action == "polled"  # 490 s late: the heartbeat runs now, and passes
    assert agent.health_requests == challenges + 1
    agent.down = True
    assert tick(1501.0).action == "polled"  # one unanswered try
    late = tick(1701.0)  # the loop 200 s behind: an unanswered poll and heartbeat
    assert (late.action, late.detail) == ("challenged", "heartbeat: no answer")
    assert monitor.store.job_decision(1) is None
    for at in range(1702, 1800):
        step = tick(float(at))
        if step.action == "decided":
            break
    assert step.detail.startswith("FAILED: the agent has not answered") and at >= 1701 + 30, (at, step)


class BusyProver:
    """A challenge at an agent whose prover other oracles hold while ``busy``: each try comes back
    busy (after the loop's turn_wait_s, in real life); valid work far above any floor otherwise."""

    def __init__(self) -> None:
        self.busy = True
        self.turn_waits: list[float | None] = []

    def __call__(self, endpoint: str, *args: object, config: ChallengeConfig, **kwargs: object) -> ChallengeOutcome:
        self.turn_waits.append(config.turn_wait_s)
        if self.busy:
            return ChallengeOutcome(0.0, error="_Busy: no turn at the agent's prover within 2 s", busy=True)
        return ChallengeOutcome(10.0**6)


def test_a_busy_prover_is_asked_again_at_the_poll_pace_and_is_never_silence(make_world) -> None:
    """Other oracles' challenges hold the prover: the job loop's challenge gives its worker back
    after turn_wait_s, the job waits and asks again at the next poll, and none of it counts toward
    silence, well past silent_after_s; a heartbeat found busy is retried at the next poll too,
    not a heartbeat interval later."""
    clock = [1000.0]
    prover = BusyProver()
    config = JobConfig(
        poll_interval_s=1.0, heartbeat_interval_s=30.0, silent_after_s=5.0, silent_min_tries=2, turn_wait_s=2.0
    )
    world = make_world([1], config, clock=lambda: clock[0], challenge=prover)
    monitor = world.monitor

    def tick(at: float) -> JobStep:
        clock[0] = at
        return the_step(monitor.tick())

    for at in range(1000, 1030):
        step = tick(float(at))
        assert (step.action, step.detail.split(":")[0]) == ("waiting", "start"), step
    assert prover.turn_waits == [2.0] * 30  # one try per poll, each waiting turn_wait_s at most
    assert monitor.store.job_decision(1) is None
    prover.busy = False
    assert tick(1030.0).action == "polled"  # the start challenge passed at last
    prover.busy = True
    step = tick(1060.0)  # the heartbeat is due, and the prover busy
    assert (step.action, step.detail.split(":")[0]) == ("waiting", "heartbeat"), step
    prover.busy = False
    tries = len(prover.turn_waits)
    assert tick(1061.0).action == "polled"  # asked again at the next poll, and passed
    assert len(prover.turn_waits) == tries + 1
    assert tick(1062.0).action == "polled" and len(prover.turn_waits) == tries + 1  # not due again before 1091
    assert monitor.store.job_decision(1) is None


def test_a_prover_busy_for_good_counts_as_silence_one_give_up_at_a_time(make_world) -> None:
    """An agent whose prover is never free (a provider hiding behind a queue it never serves):
    each turn_give_up_s of busy tries counts as one unanswered try, as one challenge waiting that
    long did, so silence still comes, only no sooner than it would have."""
    clock = [1000.0]
    give_up = ChallengeConfig().turn_give_up_s
    config = JobConfig(poll_interval_s=1.0, silent_after_s=100.0, silent_min_tries=2, turn_wait_s=2.0)
    world = make_world([1], config, clock=lambda: clock[0], challenge=BusyProver())
    steps: list[tuple[float, JobStep]] = []
    at = 1000.0
    while at < 1400.0 and (not steps or steps[-1][1].action != "decided"):
        clock[0] = at
        steps.append((at, the_step(world.monitor.tick())))
        at += 1.0
    unanswered = [at for at, step in steps if step.action == "challenged"]
    assert unanswered == [1000.0 + give_up, 1000.0 + 2 * give_up + 1]  # one per give-up, then silence
    decided_at, decided = steps[-1]
    assert decided.action == "decided" and decided.detail.startswith("FAILED: the agent has not answered"), decided
    assert decided_at == 1000.0 + 3 * give_up + 2  # the third unanswered try, 122 s after the first
