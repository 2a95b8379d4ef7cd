"""The soak's report: what the chain, the load and the fault injector say once the run is over.

    report = build_report(inputs)      # reads the chain (the node must still run) and the logs
    report.ok, report.problems         # the three things that must never happen (below)
    report.to_json(), render(report)

Read from the chain, over every job of the market (the soak is its only client):

- outcomes: each job's state: COMPLETED, FAILED, EXPIRED, CANCELLED, or unfinished;
- honest slashes: every Slashed event of the soak's providers (all honest), with the job (or the
  hardware report) it came from and the oracles' reasons quoted from their logs;
- stuck payments: jobs not terminal although their deadline passed more than STUCK_MARGIN_S
  ago: an OPEN job's accept deadline, a RUNNING job's started_at + max_duration + settle_grace
  (after which anyone may expire it, as the soak's keeper does);
- conservation: each token's balance in the market against its books (gpumarket.demo.ledger);
- hardware rejections of the soak's providers (slashed or not), with the oracles' measurements.

`ok` is False, and the command exits 1, when an honest provider was slashed, a payment is stuck,
or the books do not balance; and also when the committee did not verify one of these honest
providers at registration (it rejected its hardware, or its oracles found no common report), or
the load could not run its jobs at all: a market that turns honest providers away is not a pass.
Everything else (unfinished jobs, results that did not check, services that exited on their own)
is listed under `warnings`.

Settle latency is measured from the agent's `finished_at` (its status endpoint, wall clock) to
the soak's first sight of the job terminal on chain (it polls every pass, ~0.25 s): the time the
committee takes to challenge the end, decide, gather a quorum and settle. Jobs whose agent gave
no finish time are counted as `excluded`.
"""

from __future__ import annotations

import math
import os
import platform
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpumarket.chain.events import HardwareRejected, JobSettled, Slashed, scan_events
from gpumarket.chain.models import JobState
from gpumarket.chain.walkthrough import tokens
from gpumarket.demo.ledger import conservation_problems
from gpumarket.soak.faults import MARKER, FaultInjector, KillRecord, NodeRestartRecord, UnplannedExit
from gpumarket.soak.load import JobRecord, JobStream
from gpumarket.soak.market import SoakMarket
from gpumarket.soak.reasons import reasons_for_hardware, reasons_for_job

__all__ = [
    "OUTCOMES",
    "STUCK_MARGIN_S",
    "HardwareRejection",
    "Latency",
    "ReportInputs",
    "Slash",
    "SoakReport",
    "build_report",
    "render",
]

OUTCOMES = ("COMPLETED", "FAILED", "EXPIRED", "CANCELLED")
STUCK_MARGIN_S = 60
LATENCY_BASIS = (
    "from the agent's finished_at (its status endpoint) to the soak's first sight of the job "
    "settled on chain (polled every ~0.25 s); COMPLETED and FAILED jobs"
)


@dataclass(frozen=True)
class Latency:
    basis: str
    count: int
    excluded: int  # settled jobs whose agent gave no finish time
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, samples: list[float], excluded: int) -> Latency:
        ordered = sorted(samples)

        def rank(p: float) -> float | None:  # nearest rank: a value that was measured
            return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 2) if ordered else None

        return cls(LATENCY_BASIS, len(ordered), excluded, rank(0.50), rank(0.90), rank(0.99), rank(1.0))


@dataclass(frozen=True)
class Slash:
    """One slash of an honest provider, and why (quoted from the oracles' and agents' logs)."""

    provider: str
    amount: int  # stake-token base units
    kind: str  # "job" (a FAILED settlement) or "hardware" (a rejected hardware report)
    job_id: int | None
    tx_hash: str
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "amount": str(self.amount)}


@dataclass(frozen=True)
class HardwareRejection:
    """A committee hardware report that unverified one of the soak's (honest) providers."""

    provider: str
    measured_throughput: int
    required_throughput: int
    slashed: int
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "slashed": str(self.slashed)}


@dataclass(frozen=True)
class StuckPayment:
    job_id: int
    state: str
    escrow: int
    deadline: int  # chain time after which anyone may expire it
    chain_now: int

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "escrow": str(self.escrow)}


@dataclass(frozen=True)
class FailedJob:
    job_id: int
    provider: str | None
    agent_state: str | None
    agent_detail: str | None
    reasons: list[str]


@dataclass(frozen=True)
class ReportInputs:
    """What the run hands the report besides the chain."""

    seed: int
    busy_processes: int
    duration_s: float
    settings: dict[str, Any]  # the run's knobs and the services' timings, as given
    soak_market: SoakMarket
    stream: JobStream
    injector: FaultInjector
    workdir: Path


@dataclass
class SoakReport:
    seed: int
    machine: dict[str, Any]
    busy_processes: int
    duration_s: float
    settings: dict[str, Any]
    jobs_requested: int
    jobs_run: int
    outcomes: dict[str, int]
    honest_slashes: list[Slash]
    stuck_payments: list[StuckPayment]
    conservation_problems: list[str]
    settle_latency: Latency
    results_checked: int
    results_ok: int
    results_bad: dict[int, str]  # job id -> what is wrong with its result
    kills: list[KillRecord]
    node_restart: NodeRestartRecord | None
    unplanned_exits: list[UnplannedExit]
    failed_jobs: list[FailedJob]
    hardware_rejections: list[HardwareRejection]
    providers_left_out: dict[str, dict[str, Any]]  # name -> why, and the oracles' hardware lines
    jobs: list[JobRecord]
    load_stopped_early: str | None
    workdir: str
    warnings: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What makes the soak fail (see the module docstring)."""
        found = [
            f"honest provider slashed: {slash.provider}, {tokens(slash.amount)} mSTK, "
            + (f"job {slash.job_id}" if slash.job_id is not None else "hardware report")
            + (f": {_headline(slash.reasons)}" if slash.reasons else "")
            for slash in self.honest_slashes
        ]
        found += [
            f"payment stuck: job {stuck.job_id} still {stuck.state}, {stuck.chain_now - stuck.deadline} s past "
            "the time anyone may expire it"
            for stuck in self.stuck_payments
        ]
        found += [f"conservation: {problem}" for problem in self.conservation_problems]
        found += [
            f"honest provider not verified: {name}: {left_out['why']}"
            for name, left_out in self.providers_left_out.items()
        ]
        if self.load_stopped_early is not None:
            found.append(f"only {self.jobs_run} of {self.jobs_requested} job(s) ran: {self.load_stopped_early}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def kills_by_service(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter[str]] = {}
        for kill in self.kills:
            table.setdefault(kill.service, Counter())[kill.signal] += 1
        return {service: dict(sorted(counts.items())) for service, counts in sorted(table.items())}

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
            "seed": self.seed,
            "machine": self.machine,
            "busy_processes": self.busy_processes,
            "duration_s": self.duration_s,
            "settings": self.settings,
            "jobs_requested": self.jobs_requested,
            "jobs_run": self.jobs_run,
            "outcomes": self.outcomes,
            "honest_slashes": len(self.honest_slashes),
            "slashes": [slash.to_json() for slash in self.honest_slashes],
            "stuck_payments": len(self.stuck_payments),
            "stuck": [stuck.to_json() for stuck in self.stuck_payments],
            "conservation": {"ok": not self.conservation_problems, "problems": self.conservation_problems},
            "settle_latency_s": asdict(self.settle_latency),
            "results": {
                "checked": self.results_checked,
                "ok": self.results_ok,
                "bad": {str(job_id): why for job_id, why in self.results_bad.items()},
            },
            "kills": {
                "total": len(self.kills),
                "by_service": self.kills_by_service(),
                "by_signal": dict(sorted(Counter(kill.signal for kill in self.kills).items())),
                "log": [kill.to_json() for kill in self.kills],
            },
            "node_restart": None if self.node_restart is None else self.node_restart.to_json(),
            "unplanned_exits": [exit_.to_json() for exit_ in self.unplanned_exits],
            "failed_jobs": [asdict(job) for job in self.failed_jobs],
            "hardware_rejections": [rejection.to_json() for rejection in self.hardware_rejections],
            "providers_left_out": self.providers_left_out,
            "jobs": [asdict(job) for job in self.jobs],
            "workdir": self.workdir,
        }


def _headline(reasons: list[str]) -> str:
    """The first decision among the quoted lines (not a restart marker), for a one-line summary."""
    return next((line for line in reasons if MARKER not in line), reasons[0])


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def build_report(inputs: ReportInputs) -> SoakReport:
    """See the module docstring; the node must still be running."""
    soak, stream = inputs.soak_market, inputs.stream
    market = soak.market
    oracles = [setup.name for setup in soak.oracles]
    agents = [setup.name for setup in soak.providers]
    block = market.w3.eth.block_number
    chain_now = market.block_timestamp(block)
    jobs = [market.get_job(job_id, block=block) for job_id in range(1, market.job_count(block=block) + 1)]

    outcomes = {name: 0 for name in (*OUTCOMES, "unfinished")}
    stuck: list[StuckPayment] = []
    for job in jobs:
        if job.state.terminal:
            outcomes[job.state.name] += 1
            continue
        outcomes["unfinished"] += 1
        deadline = job.accept_deadline if job.state == JobState.OPEN else job.end_deadline + soak.settle_grace_s
        if chain_now > deadline + STUCK_MARGIN_S:
            stuck.append(StuckPayment(job.job_id, job.state.name, job.escrow, deadline, chain_now))

    records = {record.job_id: record for record in stream.records}
    events = list(
        scan_events(
            market,
            [Slashed.name, JobSettled.name, HardwareRejected.name],
            from_block=soak.deployment.block,
            to_block=block,
        )
    )
    settled_in = {e.meta.tx_hash: e for e in events if isinstance(e, JobSettled)}
    slashes = []
    for event in events:
        if not isinstance(event, Slashed) or event.provider not in soak.roles.providers:
            continue
        settled = settled_in.get(event.meta.tx_hash)  # else a hardware report's spoof slash
        reasons = (
            reasons_for_job(inputs.workdir, settled.job_id, oracles=oracles, agents=agents)
            if settled
            else reasons_for_hardware(inputs.workdir, event.provider, oracles=oracles)
        )
        slashes.append(
            Slash(
                soak.roles.name(event.provider),
                event.amount,
                "job" if settled else "hardware",
                settled.job_id if settled else None,
                event.meta.tx_hash,
                reasons,
            )
        )

    rejections = [
        HardwareRejection(
            soak.roles.name(e.provider),
            e.measured_throughput,
            e.required_throughput,
            e.slashed,
            reasons_for_hardware(inputs.workdir, e.provider, oracles=oracles),
        )
        for e in events
        if isinstance(e, HardwareRejected) and e.provider in soak.roles.providers
    ]
    failed = [
        FailedJob(
            job.job_id,
            soak.roles.names().get(job.provider),
            records[job.job_id].agent_state if job.job_id in records else None,
            records[job.job_id].agent_detail if job.job_id in records else None,
            reasons_for_job(inputs.workdir, job.job_id, oracles=oracles, agents=agents),
        )
        for job in jobs
        if job.state == JobState.FAILED
    ]

    settled_records = [
        r
        for r in stream.records
        if r.state in (JobState.COMPLETED.name, JobState.FAILED.name) and r.ended_seen_at is not None
    ]
    samples = [
        r.ended_seen_at - r.agent_finished_at
        for r in settled_records
        if r.ended_seen_at is not None and r.agent_finished_at is not None
    ]
    checked = [r for r in stream.records if r.result is not None]

    injector = inputs.injector
    report = SoakReport(
        seed=inputs.seed,
        machine=machine(),
        busy_processes=inputs.busy_processes,
        duration_s=round(inputs.duration_s, 1),
        settings=inputs.settings,
        jobs_requested=stream.plan.jobs,
        jobs_run=len(jobs),
        outcomes=outcomes,
        honest_slashes=slashes,
        stuck_payments=stuck,
        conservation_problems=conservation_problems(market, soak.roles.accounts()),
        settle_latency=Latency.of(samples, len(settled_records) - len(samples)),
        results_checked=len(checked),
        results_ok=sum(r.result == "ok" for r in checked),
        results_bad={r.job_id: r.result for r in checked if r.result != "ok"},  # type: ignore[misc]
        kills=injector.kills,
        node_restart=injector.node_restart,
        unplanned_exits=injector.unplanned_exits,
        failed_jobs=failed,
        hardware_rejections=rejections,
        providers_left_out={
            name: {"why": why, "reasons": reasons_for_hardware(inputs.workdir, soak.address_of(name), oracles=oracles)}
            for name, why in soak.left_out.items()
        },
        jobs=stream.records,
        load_stopped_early=stream.stopped_early,
        workdir=str(inputs.workdir),
    )
    report.warnings = _warnings(report, inputs, jobs)
    return report


def _warnings(report: SoakReport, inputs: ReportInputs, jobs: list[Any]) -> list[str]:
    found = []
    if report.outcomes["unfinished"]:
        unfinished = [f"{job.job_id} ({job.state.name})" for job in jobs if not job.state.terminal]
        found.append(f"{len(unfinished)} job(s) not ended when the soak stopped: " + ", ".join(unfinished))
    found += [f"job {job_id}: result {why}" for job_id, why in report.results_bad.items()]
    found += [
        f"{exit_.service} exited on its own at +{exit_.at_s:.0f} s (code {exit_.exit_code})"
        for exit_ in report.unplanned_exits
    ]
    found += [
        f"{kill.service} did not come back after {kill.signal}: {kill.error}" for kill in report.kills if kill.error
    ]
    if report.node_restart is None:
        found.append("the node was not restarted (the load ended before its middle)")
    elif report.node_restart.error:
        found.append(f"the node restart failed: {report.node_restart.error}")
    if inputs.injector.error is not None:
        found.append(f"the fault injector stopped: {inputs.injector.error}")
    return found


def render(report: SoakReport) -> str:
    """The report as a few lines of text."""
    latency = report.settle_latency
    by_service = ", ".join(
        f"{service} {'/'.join(f'{sig}x{n}' for sig, n in counts.items())}"
        for service, counts in report.kills_by_service().items()
    )
    restart = (
        "none"
        if report.node_restart is None
        else f"at +{report.node_restart.at_s:.0f} s, back after {report.node_restart.back_after_s} s"
    )
    lines = [
        f"soak: {report.jobs_run} job(s) of {report.jobs_requested} in {report.duration_s:.0f} s, seed "
        f"{report.seed}, {report.busy_processes} busy loop(s) on {report.machine['cores']} core(s)",
        "outcomes: " + ", ".join(f"{name} {count}" for name, count in report.outcomes.items()),
        f"honest slashes: {len(report.honest_slashes)}   stuck payments: {len(report.stuck_payments)}   "
        f"conservation: {'ok' if not report.conservation_problems else 'BROKEN'}",
        f"settle latency (s): p50 {latency.p50} p90 {latency.p90} p99 {latency.p99} max {latency.max} "
        f"over {latency.count} job(s) ({latency.excluded} without a finish time)",
        f"results checked: {report.results_checked}, ok {report.results_ok}",
        f"kills: {len(report.kills)} ({by_service or 'none'}); node restart: {restart}",
    ]
    for job in report.failed_jobs:
        lines.append(
            f"FAILED job {job.job_id} ({job.provider}; agent: {job.agent_state}"
            + (f", {job.agent_detail}" if job.agent_detail else "")
            + "):"
        )
        lines += [f"    {reason}" for reason in job.reasons] or ["    (no reason found in the logs)"]
    for name, left_out in report.providers_left_out.items():
        lines.append(f"{name} left out of the load: {left_out['why']}")
        lines += [f"    {reason}" for reason in left_out["reasons"]]
    lines += [f"warning: {warning}" for warning in report.warnings]
    lines += [f"PROBLEM: {problem}" for problem in report.problems]
    lines.append(f"logs: {report.workdir}")
    return "\n".join(lines)
