"""gpumarket.provider.store: SQLite settings, job transitions, challenges, and restart recovery with
real job processes (a killed job is reported lost, a live one is followed again and metered from
its start, one that ended while the agent was down is recorded finished)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest
from eth_utils import keccak

from gpumarket.measure.metering import UsageRecord, meter_pid
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.store import JobStatus, Liveness, Probe, Store, StoreConflict

from .support import CHAIN_ID, MARKET, python_spec

CLIENT = "0x" + "ab" * 20
HASH = b"\x5e" * 32


def test_wal_and_full_synchronous(store):
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with store._lock:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_job_moves_forward_only(store):
    assert store.accept(1, CLIENT, HASH).state == JobStatus.ACCEPTED
    assert store.accept(1, "0x" + "cd" * 20, HASH).client == CLIENT  # a second accept changes nothing
    record = store.receive_spec(1, CLIENT, HASH, b"{}", (0,), "/w")
    assert (record.state, record.spec, record.gpus) == (JobStatus.SPEC_RECEIVED, b"{}", (0,))
    with pytest.raises(StoreConflict):
        store.receive_spec(1, CLIENT, HASH, b"{}", (0,), "/w")
    with pytest.raises(StoreConflict):
        store.mark_finished(
            1,
            finished_at=1,
            exit_code=0,
            stop_reason=None,
            output_limit_exceeded=False,
            result_hash=HASH,
            evidence_hash=HASH,
        )
    running = store.mark_running(1, 1234, 99, 1000.5)
    assert (running.state, running.pid, running.start_ticks, running.started_at) == (
        JobStatus.RUNNING,
        1234,
        99,
        1000.5,
    )
    done = store.mark_finished(
        1,
        finished_at=1001.0,
        exit_code=0,
        stop_reason=None,
        output_limit_exceeded=False,
        result_hash=HASH,
        evidence_hash=b"\x01" * 32,
    )
    assert (done.state, done.exit_code, done.result_hash, done.output_limit_exceeded) == (
        JobStatus.FINISHED,
        0,
        HASH,
        False,
    )
    for call in (lambda: store.mark_lost(1, "x"), lambda: store.mark_running(1, 1, 1, 1.0)):
        with pytest.raises(StoreConflict) as caught:
            call()
        assert caught.value.state == "finished"
    # A spec may come for a job the store never saw (the chain is the authority).
    assert store.receive_spec(2**255, CLIENT, HASH, b"{}", (), "/w").job_id == 2**255
    assert store.counts() == {"finished": 1, "spec_received": 1}
    public = store.get(1).public()
    assert public["result_hash"] == "0x" + HASH.hex() and "spec" not in public and "client" not in public


def test_state_survives_reopening(tmp_path):
    first = Store(tmp_path / "s.sqlite")
    first.receive_spec(5, CLIENT, HASH, b"{}", (), "/w")
    first.record_challenge(b"\x01" * 16)
    first.close()
    again = Store(tmp_path / "s.sqlite")
    assert again.get(5).state == JobStatus.SPEC_RECEIVED
    assert not again.record_challenge(b"\x01" * 16)
    again.close()


def test_challenges_are_answered_and_opened_once(store):
    cid = b"\x07" * 16
    assert store.challenge(cid) is None
    assert store.record_challenge(cid) and not store.record_challenge(cid)
    assert not store.open_challenge(cid)  # no commitment yet
    store.set_challenge_root(cid, b"\x09" * 32)
    store.set_challenge_root(cid, b"\x0a" * 32)  # the first root stays
    assert store.challenge(cid).root == b"\x09" * 32
    assert store.open_challenge(cid) and not store.open_challenge(cid)
    assert store.challenge(cid).opened_at is not None


def test_recover_sorts_jobs_by_what_the_probe_finds(store):
    for job_id in (1, 2, 3, 4):
        store.receive_spec(job_id, CLIENT, HASH, b"{}", (), "/w")
    store.mark_running(1, 11, 1, 1.0)
    store.mark_running(2, 12, 1, 1.0)
    found = {
        1: Probe(Liveness.ALIVE, 11, 1, 1.0),
        2: Probe(Liveness.GONE),
        3: Probe(Liveness.NOT_STARTED),
        4: Probe(Liveness.ALIVE, 44, 4, 4.0),  # started, then the agent died before recording it
    }
    recovery = store.recover(lambda job: found[job.job_id])
    assert [job.job_id for job in recovery.resume] == [1, 4]
    assert [job.job_id for job in recovery.start] == [3]
    assert [job.job_id for job in recovery.lost] == [2]
    assert store.get(2).state == JobStatus.LOST and "gone" in store.get(2).detail
    assert (store.get(4).state, store.get(4).pid) == (JobStatus.RUNNING, 44)


def test_recover_returns_jobs_that_ended_while_the_agent_was_down(store):
    for job_id in (1, 2):
        store.receive_spec(job_id, CLIENT, HASH, b"{}", (), "/w")
    store.mark_running(1, 11, 1, 1.0)
    found = {
        1: Probe(Liveness.ENDED),
        2: Probe(Liveness.ENDED, 22, None, 2.0),  # started and ended, neither recorded
    }
    recovery = store.recover(lambda job: found[job.job_id])
    assert [job.job_id for job in recovery.ended] == [1, 2] and not recovery.lost and not recovery.resume
    assert (store.get(1).state, store.get(1).pid, store.get(1).start_ticks) == (JobStatus.RUNNING, 11, 1)
    assert (store.get(2).state, store.get(2).pid, store.get(2).start_ticks) == (JobStatus.RUNNING, 22, None)


def _agent(store, runner, jobs, provider_account) -> ProviderAgent:
    config = AgentConfig(address=provider_account.address, chain_id=CHAIN_ID, market=MARKET)
    return ProviderAgent(config, store, runner, jobs, make_prover("numpy"))


def _started(store, runner, job_id: int, code: str):
    """A job as a previous agent left it: stored, started, recorded running."""
    spec = python_spec(code)
    store.receive_spec(job_id, CLIENT, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(job_id).root))
    job = runner.start(job_id, spec)
    store.mark_running(job_id, job.pid, job.start_ticks, job.started_at)
    return job


def test_a_restart_follows_live_jobs_and_reports_killed_ones_lost(tmp_path, runner, jobs, provider_account):
    path = tmp_path / "agent.sqlite"
    before = Store(path)
    live = _started(before, runner, 1, "import time; time.sleep(1.0); print('survived')")
    killed = _started(before, runner, 2, "import time; time.sleep(60)")
    # The job started, but the agent died before it recorded so: only the pid file knows.
    spec = python_spec("import time; time.sleep(0.5); print('unrecorded')")
    before.receive_spec(3, CLIENT, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(3).root))
    unrecorded = runner.start(3, spec)
    before.close()  # the agent is gone: nothing of it remains but the database and the processes

    os.killpg(killed.pid, signal.SIGKILL)
    killed._process.wait()

    after = Store(path)
    agent = _agent(after, runner, jobs, provider_account)
    try:
        recovery = agent.recover()
        assert [job.job_id for job in recovery.resume] == [1, 3]
        assert [job.job_id for job in recovery.lost] == [2]
        assert after.get(2).state == JobStatus.LOST
        assert after.get(3).pid == unrecorded.pid
        assert agent.wait_idle(10)
        for job_id, output in ((1, b"survived\n"), (3, b"unrecorded\n")):
            record = after.get(job_id)
            assert (record.state, record.exit_code) == (JobStatus.FINISHED, 0), record
            assert runner.paths(job_id).stdout.read_bytes() == output
            assert record.result_hash is not None and record.evidence_hash is not None
    finally:
        agent.close(stop_jobs=True)
        for job in (live, unrecorded):
            job._process.wait()  # the test process is their parent; reap them
        after.close()


def test_a_job_that_ends_after_its_agent_closed_is_left_to_the_next_agent(
    tmp_path, runner, jobs, provider_account, monkeypatch
):
    path = tmp_path / "agent.sqlite"
    before = Store(path)
    job = _started(before, runner, 1, "import time; time.sleep(0.5); print('done')")
    closing = _agent(before, runner, jobs, provider_account)
    assert [record.job_id for record in closing.recover().resume] == [1]  # it follows the job
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    closing.close()  # leaves the job running, as a restart does
    before.close()
    job._process.wait()
    assert closing.wait_idle(10)  # its follower saw the end and went without touching the store
    assert thread_errors == []

    after = Store(path)
    agent = _agent(after, runner, jobs, provider_account)
    try:
        assert [record.job_id for record in agent.recover().ended] == [1]
        assert (after.get(1).state, after.get(1).exit_code) == (JobStatus.FINISHED, 0)
        assert runner.paths(1).stdout.read_bytes() == b"done\n"
    finally:
        agent.close(stop_jobs=True)
        after.close()


def test_a_restart_records_jobs_that_ended_while_the_agent_was_down(tmp_path, runner, jobs, provider_account):
    path = tmp_path / "agent.sqlite"
    before = Store(path)
    ended = _started(before, runner, 1, "import sys, time; time.sleep(0.3); print('ended'); sys.exit(3)")
    meter_pid(ended.pid, interval_s=0.05, job_id=1, journal=ended._journal, timeout_s=0.1)  # then the agent dies
    spec = python_spec("print('unrecorded')")
    before.receive_spec(2, CLIENT, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(2).root))
    unrecorded = runner.start(2, spec)  # the agent died before recording that it started
    vanished = _started(before, runner, 3, "import time; time.sleep(60)")
    before.close()
    for job in (ended, unrecorded):
        job._process.wait()  # both end while no agent follows them
    os.killpg(vanished.pid, signal.SIGKILL)
    vanished._process.wait()

    after = Store(path)
    agent = _agent(after, runner, jobs, provider_account)
    try:
        recovery = agent.recover()
        assert [job.job_id for job in recovery.ended] == [1, 2] and [job.job_id for job in recovery.lost] == [3]
        for job_id, exit_code in ((1, 3), (2, 0)):
            record = after.get(job_id)
            assert (record.state, record.exit_code) == (JobStatus.FINISHED, exit_code), record
            usage = agent.usage(job_id)
            assert keccak(usage) == record.evidence_hash and record.result_hash is not None
            assert record.finished_at == runner.paths(job_id).exit_status.stat().st_mtime_ns / 1e9
        # Metered on the job's clock up to its end, not up to the restart: the clock starts when
        # the journal begins (before the process exists) and the last sample sits at the exit
        # status's mtime. Compared exactly, not against the sleep: a loaded machine delays the
        # first sample, and must not fail the test.
        ended_usage = UsageRecord.from_json(agent.usage(1))
        assert ended_usage.started_unix_ns <= round(ended.started_at * 1e9)
        ended_at_ns = runner.paths(1).exit_status.stat().st_mtime_ns
        assert ended_usage.started_unix_ns + ended_usage.samples[-1].t_ns == ended_at_ns
        assert not ended_usage.samples[-1].running
        assert after.get(3).state == JobStatus.LOST and "no exit status" in after.get(3).detail
        assert agent.wait_idle(1)  # nothing left to follow
    finally:
        agent.close(stop_jobs=True)
        after.close()


def test_a_job_followed_again_is_metered_from_its_start(tmp_path, runner, jobs, provider_account):
    path = tmp_path / "agent.sqlite"
    before = Store(path)
    job = _started(before, runner, 1, "import time; time.sleep(1.5)")
    first = meter_pid(job.pid, interval_s=0.05, job_id=1, journal=job._journal, timeout_s=0.2)
    before.close()
    time.sleep(0.6)  # the agent is down
    after = Store(path)
    agent = _agent(after, runner, jobs, provider_account)
    try:
        assert [job.job_id for job in agent.recover().resume] == [1]
        assert agent.wait_idle(15)
        usage = UsageRecord.from_json(agent.usage(1))
        assert usage.samples[: len(first.samples)] == first.samples  # the first agent's samples are kept
        # Not the ~0.9 s since the restart: the job slept 1.5 s from before its first sample
        # (however late a loaded machine took that one).
        assert usage.summary.wall_seconds >= 1.45 - first.samples[0].t_ns / 1e9
    finally:
        agent.close(stop_jobs=True)
        job._process.wait()
        after.close()


def test_a_restart_starts_a_job_that_never_started(tmp_path, runner, jobs, provider_account, client_account):
    spec = python_spec("print('started after the restart')")
    jobs.put(9, client=client_account.address, provider=provider_account.address, spec_hash=spec.hash())
    store = Store(tmp_path / "agent.sqlite")
    store.receive_spec(9, client_account.address, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(9).root))
    agent = _agent(store, runner, jobs, provider_account)
    try:
        recovery = agent.recover()
        assert [job.job_id for job in recovery.start] == [9]
        assert agent.wait_idle(10)
        assert store.get(9).state == JobStatus.FINISHED
        assert runner.paths(9).stdout.read_bytes() == b"started after the restart\n"
    finally:
        agent.close(stop_jobs=True)
        store.close()


def test_a_restart_does_not_start_a_job_that_ended_on_chain(tmp_path, runner, jobs, provider_account, client_account):
    from gpumarket.provider.jobsource import JobState

    spec = python_spec("print(1)")
    jobs.put(
        9,
        client=client_account.address,
        provider=provider_account.address,
        spec_hash=spec.hash(),
        state=JobState.EXPIRED,
    )
    store = Store(tmp_path / "agent.sqlite")
    store.receive_spec(9, client_account.address, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(9).root))
    agent = _agent(store, runner, jobs, provider_account)
    try:
        agent.recover()
        record = store.get(9)
        assert record.state == JobStatus.LOST and "no longer running on chain" in record.detail
        assert not runner.paths(9).root.exists()
    finally:
        agent.close(stop_jobs=True)
        store.close()


def test_timeouts_count_from_the_recorded_start_across_a_restart(tmp_path, runner, jobs, provider_account):
    path = tmp_path / "agent.sqlite"
    before = Store(path)
    spec = python_spec("import time; time.sleep(60)", max_seconds=2)
    before.receive_spec(1, CLIENT, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(1).root))
    job = runner.start(1, spec)
    before.mark_running(1, job.pid, job.start_ticks, job.started_at)
    before.close()
    time.sleep(1.0)
    after = Store(path)
    agent = _agent(after, runner, jobs, provider_account)
    try:
        started = time.monotonic()
        agent.recover()
        assert agent.wait_idle(10)
        assert time.monotonic() - started < 2.0  # about 1 s left of its 2, not a fresh 2
        assert after.get(1).stop_reason == "timeout"
    finally:
        agent.close(stop_jobs=True)
        job._process.wait()
        after.close()
