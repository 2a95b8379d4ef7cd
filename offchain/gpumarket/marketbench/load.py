"""One load: N concurrent jobs through the market, start to settlement, and what they cost.

    figures = run_load(harness, LoadSettings(jobs=100, job_seconds=30), echo=print)

1. **Idle**: the oracles' CPU time over ``idle_s`` with nothing to do (their loops and
   followers tick anyway), so the load's own share can be told from it.
2. **Create**: the client (test account 4) escrows and creates N jobs of one cpu-small GPU,
   each directed to a provider (job ``i`` to provider ``i // gpus_per_provider``: N GPUs
   busy at once), one after another from its one account.
3. **Accept**: each provider accepts its jobs (the providers in parallel); the oracles
   adopt each job at its ``JobAccepted`` and challenge its agent at once (start challenges).
4. **Run**: every job starts on its agent at one instant and runs ``job_seconds``, all
   concurrently, then ends (the agent reports it finished; its end is ``finished_at``).
5. **Settle**: the oracles challenge the end, read the usage record, decide, sign, gather
   the quorum and submit; the benchmark watches the market's ``JobSettled`` events (a
   ``get_logs`` poll every ``watch_interval_s``) until every job settled, and fails loudly
   (:class:`MarketBenchError`, with the oracles' log tails) when one settles otherwise than
   COMPLETED, a service stops, or ``settle_timeout_s`` passes.

Measured over steps 2-5 (gpumarket.marketbench.measurements defines each figure): the
oracles' CPU seconds and memory, their job loop's largest lag and its steps by action, the
settlement latency of each job, the gas of the settling transactions and of every
transaction the oracles sent, and each oracle's heartbeats against the rule; beside them,
the simulated agents' and anvil's CPU time and the agents' proving (their one prover is this
machine's, shared by every provider: how long the oracles' challenges waited for it is in
the figures, and it bounds how fast jobs can be challenged here).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils.crypto import keccak

from gpumarket.chain.events import JobCreated, JobSettled, scan_events
from gpumarket.chain.keys import test_account
from gpumarket.demo.story import CLIENT_ACCOUNT
from gpumarket.marketbench.agent import BENCH_CLASS
from gpumarket.marketbench.harness import MarketBenchError, MarketHarness
from gpumarket.marketbench.measurements import (
    HeartbeatCount,
    ProcessFigures,
    ProcessWatch,
    count_heartbeats,
    cpu_seconds,
    job_steps,
    settlement_gas,
    spread,
    transactions_from,
)
from gpumarket.signing.eip712 import Outcome
from gpumarket.web.client import Timeouts, WebClient

__all__ = ["LoadSettings", "run_load"]

SPEC_HASH = keccak(text="gpumarket marketbench job: a timer on a simulated agent")
ACCEPT_WORKERS = 4
MB = 1024 * 1024
# A settled job's events reach the oracles' followers within a poll; give them that before the
# window closes, so their bookkeeping of the last settlements is in it.
DRAIN_POLLS = 3


@dataclass(frozen=True)
class LoadSettings:
    jobs: int
    job_seconds: float = 30.0
    max_duration_s: int = 3_600  # paid time per job: far beyond its run, so no job overruns
    settle_timeout_s: float | None = None  # after the jobs' end; default: from the challenges to run
    idle_s: float = 5.0
    late_grace_s: float = 5.0  # heartbeats: the challenge's own time, beyond one status poll
    watch_interval_s: float = 0.25

    def timeout_s(self) -> float:
        if self.settle_timeout_s is not None:
            return self.settle_timeout_s
        # Every job's end challenge by each oracle, one at a time at the shared prover, on a
        # loaded machine, plus the fallbacks' delays.
        return 300.0 + 9 * self.jobs * 2.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _web(url: str) -> WebClient:
    return WebClient(url, timeouts=Timeouts(5.0, 60.0), max_response_bytes=256 << 20)


def _idle_cpu(harness: MarketHarness, seconds: float) -> dict[str, float]:
    """Each oracle's CPU seconds per second with no job to follow."""
    pids = harness.oracle_pids
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


def _create_jobs(harness: MarketHarness, settings: LoadSettings) -> list[tuple[int, int]]:
    """N jobs directed to the providers: [(job id, provider index)]."""
    assert harness.w3 is not None and harness.deployment is not None
    client = test_account(CLIENT_ACCOUNT)
    market = harness.deployment.market_at(harness.w3, signer=client)
    price, gpus = harness.settings.price, harness.settings.gpus_per_provider
    payment = market.payment_token
    payment.mint(client.address, settings.jobs * price * settings.max_duration_s)
    payment.approve(market.address)
    deadline = market.block_timestamp() + 3_600
    jobs = []
    for i in range(settings.jobs):
        provider = harness.provider_keys[i // gpus].address
        result = market.create_job(
            BENCH_CLASS.id, 1, price, settings.max_duration_s, SPEC_HASH, deadline, provider=provider
        )
        jobs.append((result.event(JobCreated).job_id, i // gpus))
    return jobs


def _accept_jobs(harness: MarketHarness, jobs: Sequence[tuple[int, int]]) -> None:
    assert harness.w3 is not None and harness.deployment is not None
    by_provider: dict[int, list[int]] = {}
    for job_id, index in jobs:
        by_provider.setdefault(index, []).append(job_id)

    def accept(index: int) -> None:
        assert harness.w3 is not None and harness.deployment is not None
        own = harness.deployment.market_at(harness.w3, signer=harness.provider_keys[index])
        for job_id in by_provider[index]:
            own.accept_job(job_id)

    with ThreadPoolExecutor(ACCEPT_WORKERS, thread_name_prefix="accept") as pool:
        list(pool.map(accept, sorted(by_provider)))


def _watch_settlements(
    harness: MarketHarness, job_ids: set[int], from_block: int, settings: LoadSettings, jobs_end: float
) -> dict[int, tuple[float, JobSettled]]:
    """Each job's JobSettled and the wall time it was first seen; raises on timeout or a stopped service."""
    market = harness.market
    seen: dict[int, tuple[float, JobSettled]] = {}
    cursor = from_block
    deadline = jobs_end + settings.timeout_s()
    while len(seen) < len(job_ids):
        latest = market.w3.eth.block_number
        if latest >= cursor:
            now = time.time()
            for event in scan_events(market, [JobSettled.name], from_block=cursor, to_block=latest):
                if isinstance(event, JobSettled) and event.job_id in job_ids and event.job_id not in seen:
                    seen[event.job_id] = (now, event)
            cursor = latest + 1
        harness.check_running()
        if time.time() > deadline:
            missing = sorted(job_ids - set(seen))
            raise MarketBenchError(
                f"{len(missing)} of {len(job_ids)} jobs not settled {settings.timeout_s():.0f} s after their end "
                f"(e.g. {missing[:10]}); the oracles' logs say:\n" + _tails(harness)
            )
        time.sleep(settings.watch_interval_s)
    return seen


def _tails(harness: MarketHarness) -> str:
    return "\n".join(f"--- {name}\n{tail}" for name, tail in harness.log_tails().items())


def _steps_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {action: after[action] - before.get(action, 0.0) for action in sorted(after)}


def _challenges(urls: Sequence[str], job_ids: Sequence[int]) -> list[dict[int, list[dict[str, Any]]]]:
    """Per oracle: each job's recorded challenges (GET /challenges/job/<id>)."""
    found = []
    for url in urls:
        with _web(url) as client:
            found.append(
                {
                    job_id: list(client.request("GET", f"/challenges/job/{job_id}").json()["challenges"])
                    for job_id in job_ids
                }
            )
    return found


def _quorum_end(records: Sequence[Sequence[Mapping[str, Any]]], threshold: int) -> float | None:
    """When the ``threshold``-th oracle's end challenge of a job was answered with work: from then
    on a quorum could decide (None when fewer did)."""
    ends = sorted(
        min(float(r["at"]) for r in oracle if r["kind"] == "end" and r["verdict"] in ("pass", "slow"))
        for oracle in records
        if any(r["kind"] == "end" and r["verdict"] in ("pass", "slow") for r in oracle)
    )
    return ends[threshold - 1] if len(ends) >= threshold else None


def _process_json(figures: ProcessFigures) -> dict[str, Any]:
    return {
        "cpu_s": figures.cpu_s,
        "rss_start_mb": figures.rss_start_bytes / MB,
        "rss_peak_mb": figures.rss_peak_bytes / MB,
        "hwm_mb": figures.hwm_bytes / MB,
        "max_lag_s": figures.max_lag_s,
    }


def run_load(harness: MarketHarness, settings: LoadSettings, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs one load on the harness's market in its current settlement mode (module docstring)."""
    n, timings = settings.jobs, harness.settings.oracle
    if n > harness.settings.providers * harness.settings.gpus_per_provider:
        raise ValueError(f"{n} jobs need {n} GPUs; the market has {harness.settings.providers} providers' worth")
    harness.check_running()
    assert harness.w3 is not None
    w3 = harness.w3
    idle = _idle_cpu(harness, settings.idle_s)
    urls = harness.oracle_urls
    names = list(harness.oracle_pids)
    steps_before = {name: job_steps(url) for name, url in zip(names, urls, strict=True)}
    with _web(harness.agent_url) as agent:
        agent.request("POST", "/sim/reset").expect_ok()
    pids = {**harness.oracle_pids, "agents": harness.agent_pid}
    anvil = harness.anvil_pid
    if anvil is not None:
        pids["anvil"] = anvil
    watch = ProcessWatch(pids, dict(zip(names, urls, strict=True))).start()
    started = time.monotonic()
    from_block = w3.eth.block_number + 1
    try:
        jobs = _create_jobs(harness, settings)
        created = time.monotonic()
        _accept_jobs(harness, jobs)
        accepted = time.monotonic()
        with _web(harness.agent_url) as agent:
            body = {"seconds": settings.job_seconds, "jobs": [[job_id, index] for job_id, index in jobs]}
            start_answer = agent.request("POST", "/sim/start", content=json.dumps(body).encode()).json()
        jobs_end = float(start_answer["started_at"]) + settings.job_seconds
        echo(
            f"  {n} jobs created in {created - started:.1f} s, accepted in {accepted - created:.1f} s, "
            f"running for {settings.job_seconds:g} s"
        )
        job_ids = {job_id for job_id, _ in jobs}
        seen = _watch_settlements(harness, job_ids, from_block, settings, jobs_end)
        settled = time.monotonic()
        time.sleep(DRAIN_POLLS * timings.follower_poll_interval_s)
    finally:
        processes = watch.stop()
    ended = time.monotonic()
    to_block = w3.eth.block_number
    window_s = ended - started

    outcomes: dict[str, int] = {}
    for _, event in seen.values():
        outcomes[event.outcome.name] = outcomes.get(event.outcome.name, 0) + 1
    wrong = sorted(job_id for job_id, (_, event) in seen.items() if event.outcome is not Outcome.COMPLETED)
    if wrong:
        raise MarketBenchError(
            f"{len(wrong)} of {n} jobs settled otherwise than COMPLETED ({outcomes}; e.g. jobs {wrong[:10]}): "
            f"an honest simulated provider must be paid; the oracles' logs say:\n" + _tails(harness)
        )

    steps_after = {name: job_steps(url) for name, url in zip(names, urls, strict=True)}
    with _web(harness.agent_url) as agent:
        agent_jobs = agent.request("GET", "/sim/jobs").json()
        agent_after = agent.request("GET", "/sim/stats").json()
    ordered = sorted(job_ids)
    challenges = _challenges(urls, ordered)
    threshold = harness.market.threshold()
    grace = timings.job_poll_interval_s + settings.late_grace_s
    heartbeats = HeartbeatCount()
    per_oracle_heartbeats = []
    latencies, quorum_latencies, end_to_quorum = [], [], []
    for oracle_records in challenges:
        count = HeartbeatCount()
        for job_id in ordered:
            times = agent_jobs[str(job_id)]
            count.add(
                count_heartbeats(
                    oracle_records[job_id],
                    float(times["started_at"]),
                    float(times["finished_at"]),
                    timings.heartbeat_interval_s,
                    grace,
                )
            )
        per_oracle_heartbeats.append(count.to_json())
        heartbeats.add(count)
    for job_id in ordered:
        finished_at = float(agent_jobs[str(job_id)]["finished_at"])
        seen_at = seen[job_id][0]
        latencies.append(seen_at - finished_at)
        quorum = _quorum_end([oracle[job_id] for oracle in challenges], threshold)
        if quorum is not None:
            quorum_latencies.append(seen_at - quorum)
            end_to_quorum.append(quorum - finished_at)

    settling = settlement_gas(w3, [event.meta.tx_hash for _, event in seen.values()])
    sent = transactions_from(w3, harness.oracle_senders, from_block, to_block)
    oracle_cpu = sum(processes[name].cpu_s for name in names)
    idle_cpu = sum(idle.values()) * window_s
    rss_peak = sum(processes[name].rss_peak_bytes for name in names)
    rss_start = sum(processes[name].rss_start_bytes for name in names)
    steps = {name: _steps_delta(steps_before[name], steps_after[name]) for name in names}
    polls = float(agent_after["requests"].get("status", 0))
    all_steps = sum(sum(step.values()) for step in steps.values())
    lags = [lag for name in names if (lag := processes[name].max_lag_s) is not None]
    agent_work = {
        key: agent_after[key]
        for key in ("turns", "busy_refusals", "challenges", "openings", "prove_seconds", "turn_wait_s", "prover_slots")
    }
    load_s = settled - started
    return {
        "jobs": n,
        "settled": len(seen),
        "outcomes": outcomes,
        "window_s": window_s,
        "phases_s": {
            "create": created - started,
            "accept": accepted - created,
            "run": settings.job_seconds,
            "last_settlement_after_end": max(latencies),
            "load": load_s,
        },
        "oracle_cpu_s": oracle_cpu,
        "oracle_cpu_ms_per_job": 1000 * oracle_cpu / n,
        "oracle_idle_cpu_s_per_s": sum(idle.values()),
        # None when the idle estimate exceeds the total: the loops took what the load left of the
        # machine, and cannot be subtracted out.
        "oracle_cpu_ms_per_job_net_of_idle": 1000 * (oracle_cpu - idle_cpu) / n if oracle_cpu > idle_cpu else None,
        "oracle_rss_start_mb": rss_start / MB,
        "oracle_rss_peak_mb": rss_peak / MB,
        "oracle_rss_peak_mb_per_job": rss_peak / MB / n,
        "oracle_rss_growth_kb_per_job": max(0, rss_peak - rss_start) / 1024 / n,
        "oracle_max_lag_s": max(lags) if lags else None,
        "latency_s": spread(latencies),
        "end_to_quorum_end_challenge_s": spread(end_to_quorum),
        "quorum_end_challenge_to_settlement_s": spread(quorum_latencies),
        "gas": {
            "settling_transactions": settling.count,
            "settling_gas": settling.gas,
            "gas_per_job": settling.gas / n,
            "jobs_per_settling_transaction": n / settling.count if settling.count else math.nan,
            "oracle_transactions": sent.count,
            "oracle_gas": sent.gas,
            "oracle_gas_per_job": sent.gas / n,
            "oracle_reverted_transactions": sent.reverted,
        },
        "heartbeats": {**heartbeats.to_json(), "per_oracle": per_oracle_heartbeats, "grace_s": grace},
        "polls_per_s": polls / window_s,
        "job_steps_per_s": all_steps / window_s,
        "oracles": {
            name: {
                **_process_json(processes[name]),
                "idle_cpu_s_per_s": idle[name],
                "steps": steps[name],
                "heartbeats": per_oracle_heartbeats[i],
            }
            for i, name in enumerate(names)
        },
        "agents": {
            **_process_json(processes["agents"]),
            **agent_work,
            "prover_busy_share": agent_work["prove_seconds"] / (window_s * agent_work["prover_slots"]),
        },
        "anvil": _process_json(processes["anvil"]) if "anvil" in processes else None,
    }
