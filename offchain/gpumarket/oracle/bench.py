"""``gpumarket bench oracle``: how many job reports one oracle core gets through, and how long a
job's end takes to settle.

Two figures, each measured with real parts (SQLite on disk, secp256k1 signatures, the EVM):

- ``reports_per_second``: N distinct JobReports, each through the whole path an oracle runs
  for one report, on one thread: ``DecisionStore.decide`` (the durable SQLite commit) and
  ``OracleSigner.decide_and_sign`` as the job loop calls it (the commit, the signature, the
  signature's commit), then a peer's signature added as the API adds it
  (``DecisionStore.add_peer_signature``: recovers the signer, checks it is a committee member,
  stores it) and the quorum assembled for settlement (``OracleSigner.quorum``, which checks
  every stored signature again). The peer's signatures are made beforehand, by eth_account's
  own EIP-712 signer: a peer signs on its own machine, so nothing it computes may warm this
  oracle's memos (gpumarket.signing.eip712 memoizes digests, checksums and recoveries; each
  report here is new, so its digest and both recoveries are computed once, in the timed path).
  A warm-up of other reports runs first, in the same store. The per-stage breakdown comes from
  timing wrappers around the store's ``decide`` and the key's ``sign_report``; "attach" is the
  rest of ``decide_and_sign`` (storing our signature).
- ``settle_latency_seconds``: a market on the embedded chain (deploy/params/default.yaml: the
  2-of-3 committee of test oracles 0-2), three ``OracleService`` in this process, one honest
  cpu-dev ``ProviderService`` and a client. Each job runs a short busy loop; its latency is the
  time from the agent's ``finished_at`` (its status) to the wall-clock moment a poll of
  ``get_job`` (every ``SETTLE_POLL_S``) first saw it settled. Block timestamps are not used:
  the embedded chain stamps a block with the time its predecessor was mined, so they lag the
  wall clock by up to the gap between two transactions. The median over the jobs is the
  figure; the oracles run with the services' default loop timings unless told otherwise
  (``confirmations`` 0: the embedded chain mines a block per transaction and nothing else).

``run_bench`` returns one JSON-ready dict; the command prints it and writes it to a file.
"""

from __future__ import annotations

import functools
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

from eth_account import Account
from eth_utils.crypto import keccak

from gpumarket.chain.keys import ServiceKey, test_oracle
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.provider.runtime import RuntimeSettings
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, JobReport, Outcome, Report
from gpumarket.testing.committee import oracle_key

__all__ = [
    "ReportBench",
    "SettleBench",
    "SettleTimings",
    "bench_reports",
    "bench_settlement",
    "default_timings",
    "run_bench",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PARAMS = REPO_ROOT / "deploy" / "params" / "default.yaml"
BENCH_DOMAIN = Domain(chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
BENCH_PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
STAGES = ("decide", "sign", "attach", "peer_verify", "quorum")
SETTLE_POLL_S = 0.05
CPU_DEV = 1
PRICE = 10**12

P = ParamSpec("P")
R = TypeVar("R")


class _Timed(Generic[P, R]):
    """Calls ``function`` and adds each call's duration to ``seconds`` (a measuring wrapper)."""

    def __init__(self, function: Callable[P, R]) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def take(self) -> float:
        """The time added since the last take."""
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class _TimedKey:
    """A key whose signing time is measured (OracleSigner takes any ReportKey)."""

    def __init__(self, key: ServiceKey) -> None:
        self.address = key.address
        self.sign = _Timed(key.sign_report)

    def sign_report(self, domain: Domain, report: Report) -> bytes:
        return self.sign(domain, report)


@dataclass(frozen=True)
class ReportBench:
    reports: int
    warmup: int
    wall_seconds: float
    cpu_seconds: float  # this thread's CPU time over the timed reports
    reports_per_second: float
    stages: dict[str, dict[str, float]]  # per stage: mean and median seconds per report, share

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _report(job_id: int, epoch: int) -> JobReport:
    return JobReport(
        job_id=job_id,
        provider=BENCH_PROVIDER,
        outcome=Outcome.COMPLETED,
        gpu_seconds=60 + job_id % 3600,
        result_hash=keccak(text=f"result {job_id}"),
        evidence_hash=keccak(text=f"evidence {job_id}"),
        epoch=epoch,
    )


def _peer_signature(private_key: bytes, report: Report) -> bytes:
    """A peer's signature made apart from this process's signing code (eth_account's EIP-712)."""
    return bytes(Account.sign_typed_data(private_key, full_message=eip712.typed_data(BENCH_DOMAIN, report)).signature)


def bench_reports(root: Path, *, reports: int, warmup: int) -> ReportBench:
    """Times ``reports`` distinct JobReports through the oracle's per-report path (module doc)."""
    if reports < 1 or warmup < 0:
        raise ValueError("reports must be >= 1 and warmup >= 0")
    keys = [test_oracle(i) for i in range(3)]
    store = DecisionStore.open(root / "bench-oracle.sqlite", BENCH_DOMAIN, keys[0].address)
    try:
        store.set_committee(1, [key.address for key in keys], 2)
        key = _TimedKey(keys[0])
        signer = OracleSigner(store, key)
        decide = _Timed(store.decide)
        store.decide = decide  # type: ignore[method-assign]  # measured, same behaviour
        peer = keys[1]
        total = warmup + reports
        batch = [_report(job_id, 1) for job_id in range(1, total + 1)]
        peer_signatures = [_peer_signature(oracle_key(1), report) for report in batch]
        per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
        wall = cpu = 0.0
        for index, (report, peer_signature) in enumerate(zip(batch, peer_signatures, strict=True)):
            cpu_started, started = time.thread_time(), time.perf_counter()
            signed = signer.decide_and_sign(report)
            after_sign = time.perf_counter()
            store.add_peer_signature(report, peer_signature)
            after_peer = time.perf_counter()
            quorum = signer.quorum(report.job_id)
            ended, cpu_ended = time.perf_counter(), time.thread_time()
            if signed.signer != keys[0].address or set(quorum.signers) != {keys[0].address, peer.address}:
                raise RuntimeError(f"job {report.job_id}: the quorum is not this oracle and its peer: {quorum}")
            decide_s, sign_s = decide.take(), key.sign.take()
            if index < warmup:
                continue
            wall += ended - started
            cpu += cpu_ended - cpu_started
            attach_s = after_sign - started - decide_s - sign_s
            stage_seconds = (decide_s, sign_s, attach_s, after_peer - after_sign, ended - after_peer)
            for stage, seconds in zip(STAGES, stage_seconds, strict=True):
                per_stage[stage].append(seconds)
        stages = {
            stage: {
                "mean_seconds": statistics.fmean(times),
                "median_seconds": statistics.median(times),
                "share": sum(times) / wall,
            }
            for stage, times in per_stage.items()
        }
        return ReportBench(reports, warmup, wall, cpu, reports / wall, stages)
    finally:
        store.close()


@dataclass(frozen=True)
class SettleTimings:
    """The oracles' loop timings (seconds) under which the latency was measured."""

    job_poll_interval_s: float
    tick_interval_s: float
    follower_poll_interval_s: float


@dataclass(frozen=True)
class SettleBench:
    jobs: int
    job_seconds: float
    settle_latency_seconds: float  # the median
    latencies_seconds: list[float]
    basis: str
    outcomes: list[str]
    timings: SettleTimings
    setup_seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def default_timings() -> SettleTimings:
    """The loop timings an oracle runs with when its configuration leaves them out."""
    from gpumarket.oracle.jobs import JobConfig
    from gpumarket.oracle.service import OracleServiceConfig

    # A dataclass field's plain default stays on the class as its attribute: no config needed to read it.
    return SettleTimings(
        JobConfig().poll_interval_s, OracleServiceConfig.tick_interval, OracleServiceConfig.poll_interval
    )


def _busy_spec(seconds: float) -> Any:
    from gpumarket.agentapi.spec import JobSpec

    code = f"import time\nt = time.time()\nwhile time.time() - t < {seconds}:\n    pass\nprint('done')\n"
    return JobSpec.model_validate(
        {
            "version": 1,
            "command": [sys.executable, "-c", code],
            "env": {},
            "limits": {"max_seconds": 60, "max_output_bytes": 1 << 20, "max_memory_bytes": None},
            "outputs": [],
        }
    )


def _wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
    return value


def bench_settlement(
    root: Path,
    *,
    jobs: int,
    job_seconds: float,
    timings: SettleTimings | None = None,
    timeout_s: float = 120.0,
) -> SettleBench:
    """Runs ``jobs`` honest jobs one after another on a fresh embedded market (module doc)."""
    # Imported here: the chain and the services are heavy, and the report bench needs neither.
    from gpumarket.agentapi.client import ProviderApi
    from gpumarket.chain.artifacts import load_artifacts
    from gpumarket.chain.connection import EMBEDDED, connect
    from gpumarket.chain.keys import test_account, test_oracle
    from gpumarket.chain.market_deploy import deploy_market_web3
    from gpumarket.chain.models import Job, JobState
    from gpumarket.chain.params import load_params
    from gpumarket.client.jobs import JobClient
    from gpumarket.oracle.hardware import HardwareConfig
    from gpumarket.oracle.jobs import JobConfig
    from gpumarket.oracle.service import OracleService, OracleServiceConfig
    from gpumarket.provider.service import ProviderService, ServiceConfig

    if jobs < 1 or not job_seconds > 0:
        raise ValueError("jobs must be >= 1 and job_seconds > 0")
    timings = timings or default_timings()
    setup_started = time.monotonic()
    w3 = connect(EMBEDDED)
    params = load_params(DEFAULT_PARAMS)
    deployment = deploy_market_web3(w3, test_account(0), params, artifacts=load_artifacts())
    oracles: list[OracleService] = []
    provider: ProviderService | None = None
    try:
        for i in range(3):
            config = OracleServiceConfig(
                rpc=EMBEDDED,
                deployment=deployment,
                key=test_oracle(i),
                sender=test_account(5 + i),
                db_path=root / f"oracle{i}.sqlite",
                port=0,
                confirmations=0,
                poll_interval=timings.follower_poll_interval_s,
                tick_interval=timings.tick_interval_s,
                # Verifying the provider is setup, not measured: no waiting on fallbacks.
                hardware=HardwareConfig(fallback_delay_s=3.0, no_answer_retry_s=0.5),
                jobs=JobConfig(poll_interval_s=timings.job_poll_interval_s),
            )
            oracles.append(OracleService(config, w3=w3).start())
        for oracle in oracles:
            oracle.set_peers([o.url for o in oracles])

        key = test_account(1)
        market = deployment.market_at(w3, signer=key)
        # The deployed min stake: the params' override, or the contract's default when they leave it out.
        stake = max(10**22, 2 * market.parameters()["min_stake"])
        market.stake_token.mint(key.address, stake)
        market.stake_token.approve(market.address)
        market.stake(stake)
        port = _free_port()
        market.register(CPU_DEV, 1, PRICE, f"http://127.0.0.1:{port}")
        provider = ProviderService(
            ServiceConfig(
                rpc=EMBEDDED,
                deployment=deployment,
                key=key,
                db_path=root / "provider.sqlite",
                workdir=root / "jobs",
                port=port,
                backend="numpy",
                confirmations=0,
                poll_interval=timings.follower_poll_interval_s,
                meter_interval=0.1,
                runtime=RuntimeSettings(kind="process"),
            ),
            w3=w3,
        ).start()
        _wait_for(lambda: market.is_verified(key.address), timeout_s, "the provider's verification", 0.1)

        client_key = test_account(4)
        client_market = deployment.market_at(w3, signer=client_key)
        client_market.payment_token.mint(client_key.address, 10**24)
        client_market.payment_token.approve(client_market.address)
        client = JobClient(client_market, client_key)
        agent = ProviderApi(provider.url)
        reader = deployment.market_at(w3)
        setup_seconds = time.monotonic() - setup_started

        def settled(job_id: int) -> Job | None:  # what _wait_for polls: the job once it is terminal
            job = reader.get_job(job_id)
            return job if job.state.terminal else None

        spec = _busy_spec(job_seconds)
        latencies, outcomes = [], []
        for _ in range(jobs):
            job_id = client.create_job(
                spec, gpu_class=CPU_DEV, gpu_count=1, max_price=PRICE, max_duration=120, provider=key.address
            )
            client.wait_running(job_id, timeout_s=timeout_s)
            client.send_spec(job_id, spec)
            job = _wait_for(functools.partial(settled, job_id), timeout_s, f"job {job_id} to settle", SETTLE_POLL_S)
            seen = time.time()
            status = agent.status(job_id)
            if job.state != JobState.COMPLETED or status.get("finished_at") is None:
                outcomes.append(job.state.name)
                continue  # an honest job that did not complete has no latency to report
            latencies.append(seen - float(status["finished_at"]))
            outcomes.append(job.state.name)
        if not latencies:
            raise RuntimeError(f"no job completed: {outcomes}")
        return SettleBench(
            jobs=jobs,
            job_seconds=job_seconds,
            settle_latency_seconds=statistics.median(latencies),
            latencies_seconds=latencies,
            basis=(
                "wall clock: from the agent's status finished_at to when a get_job poll "
                f"(every {SETTLE_POLL_S} s) first saw the job settled"
            ),
            outcomes=outcomes,
            timings=timings,
            setup_seconds=setup_seconds,
        )
    finally:
        if provider is not None:
            provider.close(stop_jobs=True)
        for oracle in oracles:
            oracle.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_bench(
    *,
    reports: int = 1000,
    warmup: int = 50,
    settle_jobs: int = 3,
    job_seconds: float = 1.0,
    timings: SettleTimings | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Both benchmarks in a temporary directory (under ``workdir`` when given); one dict."""
    with tempfile.TemporaryDirectory(prefix="gpumarket-bench-oracle-", dir=workdir) as tmp:
        root = Path(tmp)
        (root / "reports").mkdir()
        report_bench = bench_reports(root / "reports", reports=reports, warmup=warmup)
        result: dict[str, Any] = {
            "reports_per_second": report_bench.reports_per_second,
            "settle_latency_seconds": None,
            "reports": report_bench.to_json(),
            "settlement": None,
            "threads": 1,
            "python": sys.version.split()[0],
        }
        if settle_jobs:
            (root / "settle").mkdir()
            settle = bench_settlement(root / "settle", jobs=settle_jobs, job_seconds=job_seconds, timings=timings)
            result["settle_latency_seconds"] = settle.settle_latency_seconds
            result["settlement"] = settle.to_json()
    for name in ("reports_per_second", "settle_latency_seconds"):
        value = result[name]
        if value is not None and not (math.isfinite(value) and value > 0):
            raise RuntimeError(f"{name} came out as {value}")
    return result
