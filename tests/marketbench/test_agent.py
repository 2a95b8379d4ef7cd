"""The simulated agents (gpumarket.marketbench.agent) answer the oracle's own code as a real agent
must: its hardware challenge (real prover, real verifier), and a job followed by the real job
loop (gpumarket.oracle.jobs.JobMonitor: start, heartbeat and end challenges, status polls, the
usage record against its evidence hash) to a COMPLETED report billed for the job's time. The
chain is a double (what the loop reads of a job and its provider; a contract that takes the
one-member committee's report); everything between the loop and the agent is real HTTP.

Also: the heartbeat rule's arithmetic (gpumarket.marketbench.measurements.count_heartbeats).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_utils.crypto import keccak

from gpumarket.agentapi.client import ProviderApi
from gpumarket.agentapi.errors import ProviderRefused
from gpumarket.chain.keys import test_account, test_oracle
from gpumarket.chain.models import Job, JobState
from gpumarket.marketbench.agent import BENCH_CLASS, SimProvider, SimulatedAgents, SimulatedAgentServer, usage_record
from gpumarket.marketbench.measurements import count_heartbeats
from gpumarket.measure.metering import UsageRecord
from gpumarket.oracle.challenge import Bucket, ChallengeConfig, challenge_provider
from gpumarket.oracle.jobs import JobConfig, JobMonitor
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.oracle.trust import measure_trusted
from gpumarket.signing.eip712 import Domain, JobReport, Outcome
from gpumarket.web.client import Timeouts, WebClient

DOMAIN = Domain(chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
KEY = test_oracle(0)
PROVIDERS = [SimProvider(0, test_account(1).address, 2), SimProvider(1, test_account(2).address, 2)]
FLOOR_GOPS = 1  # per GPU, as `gpumarket bench market` deploys its class on a shared machine


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[SimulatedAgentServer]:
    server = SimulatedAgentServer(SimulatedAgents(PROVIDERS, tmp_path / "agents"), max_connections=64).start()
    yield server
    server.stop()


def _start(server: SimulatedAgentServer, jobs: list[list[int]], seconds: float) -> float:
    with WebClient(server.url, timeouts=Timeouts(5.0, 30.0)) as web:
        body = json.dumps({"seconds": seconds, "jobs": jobs}).encode()
        return float(web.request("POST", "/sim/start", content=body).json()["started_at"])


def test_the_hardware_check_passes_at_the_providers_size(agents: SimulatedAgentServer) -> None:
    provider = PROVIDERS[0]
    required = FLOOR_GOPS * provider.gpus
    measurement = measure_trusted(
        lambda: challenge_provider(agents.endpoint(0), BENCH_CLASS.id, provider.gpus, config=ChallengeConfig()),
        required,
        good={Bucket.PASS},
    )
    # Valid work of the provider's size, timed (the verifier's own pass compares with the class
    # table's floor; the market's, lowered for a shared machine, is what the bucket is against).
    assert measurement.bucket is Bucket.PASS, measurement.detail
    assert not measurement.outcome.proven_invalid and measurement.measured_gops >= required
    assert measurement.outcome.verdict is not None and measurement.outcome.verdict.gpu_count == provider.gpus
    with ProviderApi(agents.endpoint(0)) as api:
        health = api.health()
    assert health["status"] == "ok" and health["provider"] == provider.address and len(health["gpus"]) == 2


def test_a_job_is_unknown_until_started_then_runs_then_finishes_with_its_record(
    agents: SimulatedAgentServer,
) -> None:
    api = ProviderApi(agents.endpoint(1))
    with pytest.raises(ProviderRefused) as refused:
        api.status(41)
    assert refused.value.code == "unknown_job"
    started = _start(agents, [[41, 1]], 0.6)
    assert api.status(41)["state"] == "running"
    with pytest.raises(ProviderRefused) as early:
        api.request("GET", "/jobs/41/usage")
    assert early.value.code == "not_finished"
    with pytest.raises(ProviderRefused):  # another provider's job
        ProviderApi(agents.endpoint(0)).status(41)
    time.sleep(0.7)
    status = api.status(41)
    assert status["state"] == "finished" and status["finished_at"] == pytest.approx(started + 0.6)
    raw = api.request("GET", "/jobs/41/usage")
    assert "0x" + keccak(raw).hex() == status["evidence_hash"]
    record = UsageRecord.from_json(raw)  # the oracle's own parse and consistency check
    assert record.job_id == 41 and record.summary.wall_ns == 600_000_000
    assert usage_record(41, started, 0.6).canonical_json() == raw


@dataclass
class _Chain:
    """What the job loop reads of a running job and its provider, and a contract that takes a
    report with the one-member committee's signature."""

    job: Job
    endpoint: str
    settled: dict[int, JobReport] = field(default_factory=dict)

    def get_job(self, job_id: int) -> Job:
        return self.job

    def providers(self, address: str) -> SimpleNamespace:
        return SimpleNamespace(endpoint=self.endpoint)

    def class_floor(self, gpu_class: int) -> int:
        return FLOOR_GOPS

    def block_timestamp(self, block: object = "latest") -> int:
        return int(time.time())

    def is_settled(self, job_id: int) -> bool:
        return job_id in self.settled

    def submit_settlement(self, report: JobReport, signatures: Sequence[bytes]) -> str:
        assert len(signatures) == 1
        self.settled[report.job_id] = report
        return "0x" + "11" * 32


def test_the_oracles_job_loop_completes_a_simulated_job(agents: SimulatedAgentServer, tmp_path: Path) -> None:
    job_id, provider = 7, PROVIDERS[0]
    started_on_chain = int(time.time()) - 1
    job = Job(
        job_id=job_id,
        client=test_account(4).address,
        provider=provider.address,
        state=JobState.RUNNING,
        gpu_class=BENCH_CLASS.id,
        gpu_count=1,
        max_price_per_gpu_second=1,
        price_per_gpu_second=1,
        max_duration=3_600,
        accept_deadline=started_on_chain,
        started_at=started_on_chain,
        collateral=1,
        escrow=3_600,
        spec_hash=b"\x5e" * 32,
    )
    chain = _Chain(job, agents.endpoint(0))
    store = DecisionStore.open(tmp_path / "oracle.sqlite", DOMAIN, KEY.address)
    try:
        store.set_committee(1, [KEY.address], 1)
        store.watch_job(job_id, provider.address, started_on_chain)
        config = JobConfig(poll_interval_s=0.2, heartbeat_interval_s=1.0, fallback_delay_s=0.0)
        monitor = JobMonitor(store, OracleSigner(store, KEY), chain, [], chain, config=config)  # type: ignore[arg-type]
        _start(agents, [[job_id, 0]], 2.5)
        deadline = time.monotonic() + 90
        while job_id not in chain.settled:
            assert time.monotonic() < deadline, [str(step) for step in monitor.tick()]
            monitor.tick()
            time.sleep(0.1)
        report = chain.settled[job_id]
        assert report.outcome is Outcome.COMPLETED
        assert report.gpu_seconds == 2  # 2.5 s of metered wall time, in whole seconds, x 1 GPU
        with ProviderApi(agents.endpoint(0)) as api:
            assert report.evidence_hash == keccak(api.request("GET", f"/jobs/{job_id}/usage"))
        kinds = [(challenge.kind, challenge.verdict) for challenge in store.job_challenges(job_id)]
        assert ("start", "pass") in kinds and ("end", "pass") in kinds, kinds
        assert any(kind == "heartbeat" and verdict == "pass" for kind, verdict in kinds), kinds
    finally:
        store.close()


def _beats(*times: float, verdict: str = "pass") -> list[dict[str, object]]:
    return [{"kind": "heartbeat", "at": at, "verdict": verdict} for at in times]


def test_heartbeats_on_time_late_and_missed() -> None:
    # A 100 s job, a heartbeat owed every 30 s after the last, grace 5 s.
    on_time = count_heartbeats(_beats(101, 132, 163, 194), 100, 200, 30, 5)
    assert (on_time.owed, on_time.made, on_time.late, on_time.missed) == (4, 4, 0, 0)
    # The second came 20 s after it fell due (late); the next is owed 30 s after it, so the
    # job's time holds one heartbeat fewer.
    late = count_heartbeats(_beats(101, 151, 182), 100, 200, 30, 5)
    assert (late.owed, late.made, late.late, late.missed) == (3, 3, 1, 0)
    # Nothing after the first: the rest are missed, one per interval while the job runs.
    missed = count_heartbeats(_beats(101), 100, 200, 30, 5)
    assert (missed.owed, missed.made, missed.missed) == (4, 1, 3)
    # A job shorter than the grace owes none; start and end challenges are not heartbeats.
    short = count_heartbeats([{"kind": "start", "at": 100.5, "verdict": "pass"}], 100, 104, 30, 5)
    assert (short.owed, short.missed) == (0, 0)
    unanswered = count_heartbeats(_beats(101, verdict="no answer"), 100, 120, 30, 5)
    assert (unanswered.owed, unanswered.made, unanswered.unanswered) == (1, 1, 1)
