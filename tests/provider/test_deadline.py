"""The agent never runs a job past its paid time: the wall-time limit is the spec's max_seconds
capped at what is left until the on-chain end_deadline, "now" being the later of the chain's
time and the wall clock; a job whose paid time is up is refused, recorded lost, never started;
after a restart the capped limit still counts from the recorded start.

Real runner processes, SQLite and HTTP; the chain is the MemoryJobSource double (the chain-backed
source is tested in tests/provider_chain/test_deadline_chain.py). Durations are asserted with
wide margins: a loaded machine may start or stop a job late, never early.
"""

from __future__ import annotations

import json
import time

import pytest

from gpumarket.agentapi.auth import sign_request
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.jobsource import JobState, JsonFileJobSource, OnChainJob
from gpumarket.provider.runner import Runner
from gpumarket.provider.store import JobStatus, Store

from .support import CHAIN_ID, MARKET, python_spec

JOB = 31
SLACK_S = 5.0  # how late a loaded machine may stop a job (poll period, kill grace, scheduling)
SLEEPER = "import time; time.sleep(60)"


def on_chain(jobs, job_id, client, provider, spec, *, end_deadline, chain_time=None) -> OnChainJob:
    job = OnChainJob(
        job_id=job_id,
        client=client.address,
        provider=provider.address,
        state=JobState.RUNNING,
        spec_hash=spec.hash(),
        end_deadline=end_deadline,
        chain_time=chain_time,
    )
    jobs.jobs[job_id] = job
    return job


def put_spec(served, client, spec, job_id=JOB):
    signed = sign_request(
        client, action="put-spec", chain_id=CHAIN_ID, market=MARKET, job_id=job_id, spec_hash=spec.hash()
    )
    return served.http.request(
        "PUT", f"/jobs/{job_id}/spec", spec.canonical_bytes(), {"Authorization": signed.to_header()}
    )


def wait_ended(store: Store, job_id: int, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = store.get(job_id)
        if record is not None and record.state in (JobStatus.FINISHED, JobStatus.LOST):
            return record
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {store.get(job_id)}")


def written_limit(runner: Runner, job_id: int) -> float:
    return float(runner.paths(job_id).max_seconds.read_text())


@pytest.mark.parametrize("chain_ahead_s", [None, 100_000], ids=["wall-clock", "chain-clock-ahead"])
def test_a_job_stops_when_its_paid_time_is_up_not_at_its_spec_limit(
    served, client_account, provider_account, chain_ahead_s
):
    spec = python_spec(SLEEPER, max_seconds=600)
    # A chain ahead of the wall clock (a local chain moved forward) is the reference: its
    # deadline is far in the wall clock's future, yet only 3 s of paid time are left.
    chain_time = None if chain_ahead_s is None else int(time.time()) + chain_ahead_s
    end_deadline = (chain_time or int(time.time())) + 3
    on_chain(served.jobs, JOB, client_account, provider_account, spec, end_deadline=end_deadline, chain_time=chain_time)
    asked_at = time.time()
    response = put_spec(served, client_account, spec)
    assert response.status == 202, response.body

    record = wait_ended(served.store, JOB)
    assert record.state == JobStatus.FINISHED and record.stop_reason == "timeout" and record.exit_code is None
    left_at_check = end_deadline - (chain_time if chain_time is not None else asked_at)
    limit = written_limit(served.runner, JOB)
    assert left_at_check - SLACK_S <= limit <= left_at_check + 0.01  # the time left, not 600
    ran = record.finished_at - record.started_at
    assert limit <= ran <= limit + SLACK_S
    status = served.http.request("GET", f"/jobs/{JOB}/status").json()
    assert status["timed_out"] is True and status["stop_reason"] == "timeout"


def test_the_spec_limit_stays_when_the_paid_time_is_longer(served, client_account, provider_account):
    spec = python_spec(SLEEPER, max_seconds=1)
    on_chain(served.jobs, JOB, client_account, provider_account, spec, end_deadline=int(time.time()) + 3600)
    assert put_spec(served, client_account, spec).status == 202
    record = wait_ended(served.store, JOB)
    assert written_limit(served.runner, JOB) == spec.limits.max_seconds
    assert record.stop_reason == "timeout" and 1.0 <= record.finished_at - record.started_at <= 1.0 + SLACK_S


@pytest.mark.parametrize(
    ("deadline_from_now", "chain_ahead_s"),
    [(-5, None), (100, 200)],  # past on the wall clock; or still ahead of it, but past on the chain
    ids=["past-on-the-wall-clock", "past-on-the-chain-clock"],
)
def test_a_job_whose_paid_time_is_up_is_refused_and_recorded_lost(
    served, client_account, provider_account, deadline_from_now, chain_ahead_s
):
    http = served.http
    spec = python_spec("print('must not run')")
    now = int(time.time())
    end_deadline = now + deadline_from_now
    on_chain(
        served.jobs,
        JOB,
        client_account,
        provider_account,
        spec,
        end_deadline=end_deadline,
        chain_time=None if chain_ahead_s is None else now + chain_ahead_s,
    )
    free_before = http.request("GET", "/health").json()["free_gpus"]

    response = put_spec(served, client_account, spec)
    assert (response.status, response.error) == (409, "deadline_passed"), response.body
    assert str(end_deadline) in response.json()["detail"]

    status = http.request("GET", f"/jobs/{JOB}/status").json()
    assert status["state"] == "lost" and status["started_at"] is None
    assert "end_deadline" in status["detail"] and str(end_deadline) in status["detail"]
    assert not served.runner.paths(JOB).root.exists()  # it never started
    assert http.request("GET", "/health").json()["free_gpus"] == free_before

    # A retry (fresh signature) answers the recorded state and starts nothing.
    again = put_spec(served, client_account, spec)
    assert again.status == 200 and again.json() == {"started": False, "job": status}
    assert not served.runner.paths(JOB).root.exists()


def _agent(store: Store, runner: Runner, jobs, provider_account) -> ProviderAgent:
    config = AgentConfig(address=provider_account.address, chain_id=CHAIN_ID, market=MARKET)
    return ProviderAgent(config, store, runner, jobs, make_prover("numpy"))


def test_after_a_restart_the_capped_limit_counts_from_the_recorded_start(
    tmp_path, runner, jobs, client_account, provider_account
):
    spec = python_spec(SLEEPER, max_seconds=600)
    store = Store(tmp_path / "agent.sqlite")
    # The previous agent started it with 2.5 s of paid time left, then died.
    store.receive_spec(
        JOB, client_account.address, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(JOB).root)
    )
    first = runner.start(JOB, spec, max_seconds=2.5)
    store.mark_running(JOB, first.pid, first.start_ticks, first.started_at)
    time.sleep(1.0)
    jobs.failing = True  # the chain is unreachable at the restart: the written limit suffices
    agent = _agent(store, Runner(runner.config), jobs, provider_account)
    try:
        assert [job.job_id for job in agent.recover().resume] == [JOB]
        record = wait_ended(store, JOB)
        assert record.stop_reason == "timeout"
        ran = record.finished_at - record.started_at
        assert 2.5 <= ran <= 2.5 + SLACK_S  # from the recorded start: not 1 s + 2.5 s, not 600 s
    finally:
        agent.close(stop_jobs=True)
        first._process.wait()  # the test process is its parent
        store.close()


def test_a_restart_starts_a_stored_job_only_within_its_paid_time(
    tmp_path, runner, jobs, client_account, provider_account
):
    late, timely = python_spec("print('late')"), python_spec(SLEEPER, max_seconds=600)
    now = int(time.time())
    on_chain(jobs, 1, client_account, provider_account, late, end_deadline=now - 1)
    on_chain(jobs, 2, client_account, provider_account, timely, end_deadline=now + 3)
    store = Store(tmp_path / "agent.sqlite")
    for job_id, spec in ((1, late), (2, timely)):
        store.receive_spec(
            job_id, client_account.address, spec.hash(), spec.canonical_bytes(), (), str(runner.paths(job_id).root)
        )
    agent = _agent(store, runner, jobs, provider_account)
    try:
        assert [job.job_id for job in agent.recover().start] == [1, 2]
        lost = store.get(1)
        assert lost.state == JobStatus.LOST and str(now - 1) in lost.detail and lost.started_at is None
        assert not runner.paths(1).root.exists()
        record = wait_ended(store, 2)
        assert record.stop_reason == "timeout" and record.finished_at - record.started_at <= 3 + SLACK_S
        assert written_limit(runner, 2) <= 3
    finally:
        agent.close(stop_jobs=True)
        store.close()


def test_the_runner_refuses_a_limit_that_is_not_positive(runner):
    spec = python_spec("print(1)")
    for bad in (0, -1.5, float("nan")):
        with pytest.raises(ValueError, match="max_seconds must be positive"):
            runner.start(JOB, spec, max_seconds=bad)
    assert not runner.paths(JOB).root.exists()


def test_a_jobs_file_may_give_the_deadline(tmp_path, client_account, provider_account):
    entry = {
        "job_id": 5,
        "client": client_account.address,
        "provider": provider_account.address,
        "state": "RUNNING",
        "spec_hash": "0x" + "11" * 32,
    }
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"jobs": [entry, {**entry, "job_id": 6, "end_deadline": 1_900_000_000}]}))
    source = JsonFileJobSource(path)
    assert source.get_job(5).end_deadline == 0 and source.get_job(5).chain_time is None  # no cap
    assert source.get_job(6).end_deadline == 1_900_000_000
