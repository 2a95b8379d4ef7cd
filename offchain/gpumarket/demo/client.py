"""The demo client's part of the story: create the jobs wave by wave, send each spec, follow
the jobs to their settlement, fetch and check every completed job's result, claim.

    plan = ClientPlan(jobs=(JobPlan(0, provider=addr), ...), max_price=..., max_duration=...)
    reports = run_client(JobClient(market.with_signer(key), key), plan, echo=print)

The same function runs inside the demo's process and, for devnet, in a process of its own
(`gpumarket demo-client`, reading the plan from JSON and writing the reports as JSON).

A wave's jobs are all created before any is followed, so each provider works at once; the
next wave starts when every job of this one has ended on chain (a provider holds one job per
GPU: a job directed to a busy provider would be skipped, not queued). A job the committee
fails may end before its spec is sent: that is recorded, not an error. What the client cannot
do (a job never accepted, a result that does not verify) is in the report for the story to
judge; only a wave that does not end within `wave_timeout_s` raises ClientTimeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from gpumarket.agentapi.errors import ClientError
from gpumarket.chain.models import Job, JobState
from gpumarket.chain.walkthrough import tokens
from gpumarket.client.jobs import JobClient
from gpumarket.demo.workloads import workload

__all__ = ["ClientJobReport", "ClientPlan", "ClientTimeout", "JobPlan", "run_client", "write_reports"]


class ClientTimeout(RuntimeError):
    """A wave of jobs did not end on chain in time."""


@dataclass(frozen=True)
class JobPlan:
    """One job of the story: its workload (gpumarket.demo.workloads index), the provider it is
    directed to (None: an open job, any provider may take it) and its wave."""

    index: int
    provider: str | None
    wave: int = 0


@dataclass(frozen=True)
class ClientPlan:
    jobs: tuple[JobPlan, ...]
    max_price: int  # per GPU-second: escrow = max_price x gpu_count x max_duration
    max_duration: int
    gpu_class: int
    gpu_count: int = 1
    image: str | None = None  # the jobs' container image (pinned by digest); None: host-process jobs
    accept_window: int = 600
    wave_timeout_s: float = 90.0
    poll_interval_s: float = 0.25

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_price"] = str(self.max_price)  # beyond JSON's safe integers in general
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientPlan:
        values = dict(data)
        values["jobs"] = tuple(JobPlan(**job) for job in data["jobs"])
        values["max_price"] = int(data["max_price"])
        return cls(**values)


@dataclass
class ClientJobReport:
    """What the client saw of one job."""

    index: int
    workload: str
    directed_to: str | None
    job_id: int | None = None
    chain_state: str | None = None
    spec: str = "not sent"  # "sent", or why not
    runtime: str | None = None  # how the provider's agent said it runs the job ("container", "process", "ray")
    node: str | None = None  # the cluster node it ran on, as the agent said once it ended (cluster runtime)
    result: str | None = None  # "ok", or what is wrong; None when there is no result to fetch
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientJobReport:
        return cls(**data)


def run_client(client: JobClient, plan: ClientPlan, *, echo: Callable[[str], None] = print) -> list[ClientJobReport]:
    """Play the client's part (see the module docstring); the reports in plan order."""
    reports = [ClientJobReport(job.index, workload(job.index).name, job.provider) for job in plan.jobs]
    for wave in sorted({job.wave for job in plan.jobs}):
        members = [(job, report) for job, report in zip(plan.jobs, reports, strict=True) if job.wave == wave]
        for job, report in members:
            spec = workload(job.index).spec(plan.image, plan.gpu_count)
            report.job_id = client.create_job(
                spec,
                gpu_class=plan.gpu_class,
                gpu_count=plan.gpu_count,
                max_price=plan.max_price,
                max_duration=plan.max_duration,
                provider=job.provider,
                accept_window=plan.accept_window,
            )
            echo(
                f"client: created job {report.job_id} ({report.workload}, "
                f"{'open to any provider' if job.provider is None else 'directed'})"
            )
        _follow_wave(client, plan, [report for _, report in members], echo)
    claimed = client.claim()
    if claimed:
        symbols: dict[str, str] = {
            token.address: token.symbol() for token in (client.market.stake_token, client.market.payment_token)
        }
        amounts = " and ".join(f"{tokens(amount)} {symbols[token]}" for token, amount in claimed.items())
        echo(f"client: claimed {amounts} (refunds, and its share of any slash)")
    return reports


def _follow_wave(
    client: JobClient, plan: ClientPlan, reports: list[ClientJobReport], echo: Callable[[str], None]
) -> None:
    deadline = time.monotonic() + plan.wave_timeout_s
    pending: dict[int, ClientJobReport] = {}
    for report in reports:
        assert report.job_id is not None  # run_client created every job of the wave
        pending[report.job_id] = report
    while pending:
        for job_id, report in list(pending.items()):
            job = client.job(job_id)
            if job.state == JobState.RUNNING and report.spec == "not sent":
                report.spec = _send_spec(client, plan, job_id, report, echo)
            if job.state.terminal:
                report.chain_state = job.state.name
                if job.state == JobState.COMPLETED:
                    report.result = _check_result(client, job_id, report, echo)
                    report.node = _node_of(client, job)
                elif report.spec == "not sent":
                    report.spec = f"not sent: the job was {job.state.name} before it could be"
                del pending[job_id]
        if pending and time.monotonic() > deadline:
            states = ", ".join(f"job {job_id} {client.job(job_id).state.name}" for job_id in pending)
            raise ClientTimeout(f"jobs did not end within {plan.wave_timeout_s:g} s: {states}")
        if pending:
            time.sleep(plan.poll_interval_s)


def _send_spec(
    client: JobClient, plan: ClientPlan, job_id: int, report: ClientJobReport, echo: Callable[[str], None]
) -> str:
    try:
        answer = client.send_spec(job_id, workload(report.index).spec(plan.image, plan.gpu_count))
    except ClientError as error:
        # The committee may have failed the job between our read and the provider's.
        report.notes.append(f"spec refused: {error}")
        return f"refused: {error}"
    job = answer.get("job")
    report.runtime = job.get("runtime") if isinstance(job, dict) else None
    echo(f"client: sent job {job_id}'s spec to its provider (runtime: {report.runtime or 'not said'})")
    return "sent"


def _check_result(client: JobClient, job_id: int, report: ClientJobReport, echo: Callable[[str], None]) -> str:
    try:
        bundle = client.fetch_result(job_id)  # checked against the on-chain result_hash
    except ClientError as error:
        return f"not fetched: {error}"
    problem = workload(report.index).check(bundle)
    if problem is not None:
        return f"wrong: {problem}"
    stdout = bundle.contents.get("stdout", b"").decode(errors="replace").strip()
    echo(f"client: job {job_id}'s result verified (hash as settled on chain): {stdout}")
    return "ok"


def _node_of(client: JobClient, job: Job) -> str | None:
    """The address of the cluster node the provider's agent says ran the job; None off a cluster."""
    status = client.ask_agent(job).status
    placement = status.get("placement") if isinstance(status, dict) else None
    address = placement.get("address") if isinstance(placement, dict) else None
    return address if isinstance(address, str) else None


def write_reports(path: Any, reports: list[ClientJobReport]) -> None:
    """The reports as JSON (the devnet client process's answer to the story)."""
    with open(path, "w") as out:
        json.dump([report.to_json() for report in reports], out, indent=1)
