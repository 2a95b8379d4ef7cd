"""A client's job actions, each checked before it is sent, and its jobs' status.

    market = deployment.market_at(w3, signer=key)
    result = jobs.create(market, spec, gpu_class=1, gpu_count=1, max_price=10**12, max_duration=600,
                         provider=offer_address, approve=True)      # result.details["job_id"]
    jobs.send_spec(market, job_id, spec)                            # (again) to the provider that accepted it
    jobs.cancel(market, job_id)                                     # an OPEN job of the sender's
    jobs.expire(market, job_id)                                     # past its deadline: anyone may
    print(jobs.status(market, job_id, agent_timeouts=PROBE_TIMEOUTS).render())
    print(jobs.list_jobs(market, key.address, from_block=deployment.block).render())
    jobs.claim(market)                                              # refunds and payments credited

The chain work is gpumarket.client.jobs.JobClient's (create, send the spec, cancel, claim,
settlement); this module adds the checks in front of it: the job's terms within the contract's
ranges (escrow.vy create_job), the payment token's balance and allowance for the escrow, a
directed job's provider able to accept it (registered, verified, not jailed, its class, its
GPUs and enough of them not held by its running jobs, its price) and its agent able to start
it now (it answers GET /health and has the GPUs free; `agent_timeouts=None` skips that
question); for send_spec the job's client and its on-chain spec_hash; for cancel the job's state
and client; for expire the job's deadline by the chain's clock. A status says what to do next,
from the chain and (given `agent_timeouts`) from what the provider's agent says about the job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpumarket.actions import render
from gpumarket.actions.common import (
    ActionResult,
    TokenInfo,
    TxRecord,
    chain_now,
    checksum,
    require_allowance,
    require_balance,
    require_gas,
    require_signer,
    token_info,
)
from gpumarket.actions.errors import ActionError, guard
from gpumarket.agentapi.client import PROBE_TIMEOUTS, HttpTimeouts, probe_agent
from gpumarket.agentapi.spec import AnyJobSpec, spec_hash
from gpumarket.chain.connection import is_local_chain, mine
from gpumarket.chain.events import Claimed, JobCancelled, JobCreated, JobExpired, JobSettled, scan_events
from gpumarket.chain.limits import MAX_ACCEPT_WINDOW, MAX_GPUS, MAX_JOB_DURATION, MAX_PRICE
from gpumarket.chain.market import Market
from gpumarket.chain.models import ZERO_ADDRESS, Job, JobState, ProviderRecord
from gpumarket.client.jobs import AgentAnswer, JobClient, JobUpdate, ask_agents

__all__ = [
    "ClientJobs",
    "JobStatus",
    "cancel",
    "check_spec",
    "claim",
    "create",
    "expirable_at",
    "expire",
    "list_jobs",
    "send_spec",
    "status",
]


def _client(market: Market, from_block: int = 0, timeouts: HttpTimeouts | None = None) -> JobClient:
    require_signer(market)
    return JobClient(market, market.signer, timeouts=timeouts, from_block=from_block)  # type: ignore[arg-type]


_SEE_OTHERS = "see `gpumarket client providers`, or create an open job"


def _check_provider(market: Market, provider: str, gpu_class: int, gpu_count: int, max_price: int) -> ProviderRecord:
    """A directed job's provider could accept it now (registry.vy _take_gpus_at_price)."""
    with guard():
        record = market.providers(provider)
        verified = market.is_verified(provider)
        in_use = market.gpus_in_use(provider)
    see = _SEE_OTHERS
    if not record.registered:
        raise ActionError(f"provider {provider} is not registered", see, code="not_registered")
    if record.jailed:
        raise ActionError(f"provider {provider} is jailed", see, code="provider_jailed")
    if not verified:
        raise ActionError(
            f"provider {provider} is not verified (no current hardware report): it cannot accept jobs",
            see,
            code="provider_unverified",
        )
    if record.gpu_class != gpu_class:
        raise ActionError(
            f"provider {provider} offers class {record.gpu_class}, the job needs class {gpu_class}",
            see,
            code="wrong_class",
        )
    if record.gpu_count < gpu_count:
        raise ActionError(
            f"provider {provider} has {record.gpu_count} GPU(s), the job needs {gpu_count}", see, code="not_enough_gpus"
        )
    if record.gpu_count - in_use < gpu_count:
        raise ActionError(
            f"provider {provider}'s running jobs hold {in_use} of its {record.gpu_count} GPU(s),"
            f" the job needs {gpu_count} free",
            f"retry once its running jobs end, or {see}",
            code="provider_busy",
        )
    if record.price_per_gpu_second > max_price:
        raise ActionError(
            f"provider {provider} asks {record.price_per_gpu_second} per GPU-second, above the job's max {max_price}",
            f"raise the max price, or {see}",
            code="price_above_max",
        )
    return record


def _check_agent(provider: str, endpoint: str, gpu_count: int, timeouts: HttpTimeouts) -> None:
    """A directed job's provider agent answers and has the GPUs free to start it now: the chain
    cannot tell, and an escrow paid to a provider that cannot start the job stays locked until
    the job expires."""
    health = probe_agent(endpoint, timeouts)
    if not health.answered:
        raise ActionError(
            f"provider {provider}'s agent at {endpoint} does not answer ({health.error})",
            f"retry once the provider runs its agent, or {_SEE_OTHERS}",
            code="agent_down",
        )
    if health.provider is not None and health.provider.lower() != provider.lower():
        raise ActionError(
            f"the agent at {endpoint} serves provider {health.provider}, not {provider}",
            _SEE_OTHERS,
            code="agent_mismatch",
        )
    if not health.can_run(gpu_count):
        raise ActionError(
            f"provider {provider}'s agent has {health.free_gpus} of {health.gpus} GPU(s) free now, the"
            f" job needs {gpu_count}",
            f"retry once its running jobs end, or {_SEE_OTHERS}",
            code="agent_busy",
        )


def create(
    market: Market,
    spec: AnyJobSpec,
    *,
    gpu_class: int,
    gpu_count: int,
    max_price: int,
    max_duration: int,
    provider: str | None = None,
    accept_window: int = 600,
    approve: bool = False,
    from_block: int = 0,
    agent_timeouts: HttpTimeouts | None = PROBE_TIMEOUTS,
) -> ActionResult:
    """Escrow max_price * gpu_count * max_duration and create the job (provider None: open to
    any). Without an allowance: NeedsApproval, or (approve=True) an approval of the escrow first.
    A directed job's agent is asked first whether it can start the job (None: not asked)."""
    sender = require_signer(market)
    with guard():
        listed = 0 < gpu_class < 2**16 and market.class_floor(gpu_class) != 0
        paused = market.paused()
    if paused:
        raise ActionError("the market is paused: no new jobs", "retry once governance unpauses it", code="paused")
    if not listed:
        raise ActionError(
            f"GPU class {gpu_class} is not listed by this market",
            "use a listed class (1 = cpu-dev)",
            code="unknown_class",
        )
    for name, value, upper in (
        ("gpu count", gpu_count, MAX_GPUS),
        ("max price", max_price, MAX_PRICE),
        ("max duration", max_duration, MAX_JOB_DURATION),
        ("accept window", accept_window, MAX_ACCEPT_WINDOW),
    ):
        if not 1 <= value <= upper:
            raise ActionError(
                f"{name} {value} is outside 1 .. {upper}",
                f"give a {name} within the contract's range",
                code="out_of_range",
            )
    if provider is not None:
        provider = checksum(provider, "provider")
        record = _check_provider(market, provider, gpu_class, gpu_count, max_price)
        if agent_timeouts is not None:
            _check_agent(provider, record.endpoint, gpu_count, agent_timeouts)
    escrow = max_price * gpu_count * max_duration
    token = market.payment_token
    info = require_balance(market, token, escrow, f"the escrow ({max_price} x {gpu_count} GPU(s) x {max_duration} s)")
    require_gas(market)
    sent: list[TxRecord] = []
    approval = require_allowance(market, token, escrow, auto_approve=approve)
    if approval is not None:
        sent.append(approval)
    client = _client(market, from_block)
    with guard():
        job_id = client.create_job(
            spec,
            gpu_class=gpu_class,
            gpu_count=gpu_count,
            max_price=max_price,
            max_duration=max_duration,
            provider=provider,
            accept_window=accept_window,
        )
        created = _created_event(market, job_id, from_block)
    if created is not None:
        sent.append(TxRecord.from_hash(market, "create_job", created.meta.tx_hash))
    to = provider or "any verified provider"
    return ActionResult(
        "create",
        f"job {job_id} created for {to}: escrow {render.amount(escrow, info.decimals, info.symbol)}",
        tuple(sent),
        {
            "job_id": job_id,
            "client": sender,
            "provider": provider,
            "escrow": escrow,
            "gpu_class": gpu_class,
            "gpu_count": gpu_count,
            "max_price_per_gpu_second": max_price,
            "max_duration": max_duration,
        },
    )


def _created_event(market: Market, job_id: int, from_block: int) -> JobCreated | None:
    """JobClient returns the id only; the creating transaction is found from its event."""
    start = max(from_block, market.w3.eth.block_number - 16)  # created a few blocks ago at most
    for event in scan_events(market, [JobCreated.name], from_block=start):
        if isinstance(event, JobCreated) and event.job_id == job_id:
            return event
    return None


def _job(market: Market, job_id: int) -> Job:
    with guard():
        job = market.get_job(job_id)
    if not job.exists:
        raise ActionError(
            f"job {job_id} does not exist on this market", "check the job id and the deployment", code="no_such_job"
        )
    return job


def _own_job(market: Market, job_id: int) -> Job:
    """The job, created by the sender (only its client may cancel it or hand over its spec)."""
    sender = require_signer(market)
    job = _job(market, job_id)
    if job.client != sender:
        raise ActionError(
            f"job {job_id} belongs to {job.client}, not {sender}",
            "use the key of the account that created the job",
            code="not_client",
        )
    return job


def cancel(market: Market, job_id: int) -> ActionResult:
    """Cancel the sender's OPEN job; its escrow becomes claimable (`claim`)."""
    job = _own_job(market, job_id)
    if job.state != JobState.OPEN:
        hints = {
            JobState.RUNNING: "a running job cannot be cancelled: it ends when the committee settles it, or anyone"
            f" may expire it after its paid time and the settle grace (`gpumarket client cancel"
            f" {job_id} --expire`)",
        }
        raise ActionError(
            f"job {job_id} is {job.state.name}; only an OPEN job can be cancelled",
            hints.get(job.state, "it is over: `claim` collects any refund"),
            code="job_not_open",
        )
    require_gas(market)
    with guard():
        tx = _client(market).cancel(job_id)
    refund = tx.event(JobCancelled).refund
    info = token_info(market.payment_token)
    return ActionResult(
        "cancel",
        f"job {job_id} cancelled: {render.amount(refund, info.decimals, info.symbol)} now claimable (`claim`)",
        (TxRecord.of("cancel_job", tx),),
        {"job_id": job_id, "refund": refund},
    )


def expirable_at(job: Job, settle_grace: int) -> int:
    """The chain time from which anyone may expire the job (escrow.vy expire_job: strictly after
    the accept deadline, or after the paid time plus the settle grace); 0 when it cannot expire."""
    if job.state == JobState.OPEN:
        return job.accept_deadline + 1
    if job.state == JobState.RUNNING:
        return job.end_deadline + settle_grace + 1
    return 0


def _chain_clock(market: Market, target: int) -> int:
    """The chain's time, which its contract checks read: the latest block's. A local node (anvil,
    the embedded chain) mines only when a transaction arrives, so its clock stands still while
    idle; when the wall clock is past `target` and the chain's is not, one empty block moves it on."""
    with guard():
        now = chain_now(market)
        if now < target <= time.time() and is_local_chain(market.w3):
            mine(market.w3)
            now = chain_now(market)
    return now


def expire(market: Market, job_id: int) -> ActionResult:
    """Expire an OPEN job past its accept deadline, or a RUNNING one past its paid time and the
    settle grace (anyone may): the whole escrow becomes claimable by the job's client."""
    require_signer(market)
    job = _job(market, job_id)
    with guard():
        grace = market.parameters()["settle_grace"]
    at = expirable_at(job, grace)
    if not at:
        raise ActionError(
            f"job {job_id} is {job.state.name}: only an open or running job can expire",
            "it is over: `gpumarket client claim` collects any refund",
            code="job_not_expirable",
        )
    now = _chain_clock(market, at)
    if now < at:
        what = "its accept deadline" if job.state == JobState.OPEN else "its paid time and the settle grace"
        raise ActionError(
            f"job {job_id} can be expired after {what}, from {render.utc(at)} by the chain's clock; the chain's clock"
            f" (its latest block) is at {render.utc(now)}: {render.duration(at - now)} to go",
            f"retry after {render.utc(at)}; the chain's clock moves only with new blocks, so on a node that mines"
            " only when a transaction arrives, retry once one was mined after that time",
            code="not_expirable_yet",
            details={"job_id": job_id, "expirable_at": at, "now": now},
        )
    require_gas(market)
    with guard():
        tx = market.expire_job(job_id)
    event = tx.event(JobExpired)
    info = token_info(market.payment_token)
    return ActionResult(
        "expire",
        f"job {job_id} expired: {render.amount(event.refund, info.decimals, info.symbol)}"
        f" now claimable by its client {job.client} (`claim`)",
        (TxRecord.of("expire_job", tx),),
        {
            "job_id": job_id,
            "client": job.client,
            "refund": event.refund,
            "collateral_released": event.collateral_released,
        },
    )


def check_spec(market: Market, job_id: int, spec: AnyJobSpec, *, open_ok: bool = False) -> Job:
    """The sender's job, whose on-chain spec_hash `spec` hashes to, in a state to receive it:
    RUNNING (or, with `open_ok`, still OPEN: the caller waits for a provider to accept it)."""
    job = _own_job(market, job_id)
    digest = spec_hash(spec)
    if digest != job.spec_hash:
        raise ActionError(
            f"this spec hashes to 0x{digest.hex()}, job {job_id} was created for spec_hash 0x{job.spec_hash.hex()}",
            "give the spec file the job was created with (the same command, env, limits and outputs)",
            code="spec_mismatch",
        )
    if job.state == JobState.OPEN and not open_ok:
        raise ActionError(
            f"job {job_id} is OPEN: no provider accepted it yet",
            f"send the spec once one does (`gpumarket client send-spec {job_id} --spec FILE --wait`"
            f" waits for that), or take the escrow back (`gpumarket client cancel {job_id}`)",
            code="job_not_accepted",
        )
    if job.state.terminal:
        hint = (
            f"fetch its result: `gpumarket client result {job_id} --out DIR`"
            if job.state == JobState.COMPLETED
            else "it is over: `gpumarket client claim` collects any refund"
        )
        raise ActionError(f"job {job_id} is {job.state.name}: too late to send its spec", hint, code="job_over")
    return job


def send_spec(
    market: Market, job_id: int, spec: AnyJobSpec, *, timeouts: HttpTimeouts | None = None, from_block: int = 0
) -> ActionResult:
    """Send (or send again: the agent keeps the first) the job's spec, signed by its client, to
    the provider that accepted it."""
    job = check_spec(market, job_id, spec)
    with guard():
        answer = _client(market, from_block, timeouts).send_spec(job_id, spec)
    started = bool(answer.get("started"))
    agent_job = answer.get("job")
    state = agent_job.get("state") if isinstance(agent_job, dict) else None
    summary = (
        f"job {job_id}: spec sent to provider {job.provider}, which started it"
        if started
        else f"job {job_id}: provider {job.provider} already had the spec (its state: {state})"
    )
    return ActionResult(
        "send_spec", summary, (), {"job_id": job_id, "provider": job.provider, "started": started, "agent_state": state}
    )


def claim(market: Market) -> ActionResult:
    """Withdraw everything the market credited to the sender, in both tokens (no transaction
    when nothing is credited)."""
    sender = require_signer(market)
    with guard():
        tokens: dict[str, TokenInfo] = {
            token.address: token_info(token) for token in (market.payment_token, market.stake_token)
        }
        pending = {address: market.claimable(address, sender) for address in tokens}
    if any(pending.values()):
        require_gas(market)
    before = market.w3.eth.block_number
    with guard():
        claimed = _client(market).claim()
    sent = _claim_txs(market, sender, before)
    text = ", ".join(
        render.amount(value, tokens[address].decimals, tokens[address].symbol) for address, value in claimed.items()
    )
    return ActionResult(
        "claim",
        f"claimed {text}" if claimed else "nothing to claim",
        sent,
        {"account": sender, "claimed": {address: claimed.get(address, 0) for address in tokens}},
    )


def _claim_txs(market: Market, account: str, after_block: int) -> tuple[TxRecord, ...]:
    return tuple(
        TxRecord.from_hash(market, "claim", event.meta.tx_hash)
        for event in scan_events(market, [Claimed.name], from_block=after_block + 1)
        if isinstance(event, Claimed) and event.account == account
    )


# ---------------------------------------------------------------------------- status


@dataclass(frozen=True)
class JobStatus:
    """A job as the chain shows it now, its settlement if any, what its provider's agent says
    about it (when asked), and what to do next."""

    job: Job
    now: int
    settle_grace: int
    payment_token: TokenInfo
    settlement: JobSettled | None
    agent: AgentAnswer | None = None
    stake_token: TokenInfo | None = None  # a slash is in the stake token; None: shown in base units

    @property
    def expirable_at(self) -> int:
        """When anyone may expire the job (escrow.vy expire_job); 0 when it cannot expire."""
        return expirable_at(self.job, self.settle_grace)

    def next_step(self) -> str:
        job, now, n = self.job, self.now, self.job.job_id
        expire = f"`gpumarket client cancel {n} --expire`"
        if job.state == JobState.OPEN:
            if now >= self.expirable_at:
                return f"nobody accepted it in time: {expire} refunds the escrow"
            return (
                f"waiting for a provider to accept it (until {render.utc(job.accept_deadline)}); then send the"
                f" spec: `gpumarket client send-spec {n} --spec FILE --wait` waits for that; or take the escrow"
                f" back: `gpumarket client cancel {n}`"
            )
        if job.state == JobState.RUNNING:
            if now >= self.expirable_at:
                return f"not settled within the paid time and the settle grace: {expire} refunds the escrow"
            later = f"{expire} from {render.utc(self.expirable_at)}"
            agent = self.agent
            if agent is None:
                return (
                    "running: the committee settles it after its end challenge (`gpumarket client status"
                    f" {n}` asks the provider)"
                )
            if agent.has_spec is False:
                return (
                    f"the provider has no spec and the paid time runs (until {render.utc(job.end_deadline)}):"
                    f" send it, `gpumarket client send-spec {n} --spec FILE`"
                )
            if agent.state == "finished":
                return (
                    f"finished: fetch and check the result, `gpumarket client result {n} --out DIR`; the"
                    " committee settles it"
                )
            if agent.state == "lost":
                return f"the provider lost it: the committee fails it and you are refunded, or {later}"
            if agent.state is None:
                return (
                    f"the provider's agent does not answer: retry `gpumarket client status {n}`; if it stays"
                    f" down the committee fails the job and you are refunded, or {later}"
                )
            return f"running at the provider: `gpumarket client status {n}` follows it"
        if job.state == JobState.COMPLETED:
            return (
                f"completed: `gpumarket client result {n} --out DIR` fetches the checked result;"
                " `gpumarket client claim` collects the refund of unused paid time"
            )
        return "over: `gpumarket client claim` collects what the market credited (if not claimed yet)"

    def deadline(self) -> str:
        """The deadline that matters now (or the outcome), for one table cell."""
        job, now = self.job, self.now
        if job.state == JobState.OPEN:
            return f"accept by {render.when(job.accept_deadline, now)}"
        if job.state == JobState.RUNNING:
            return f"paid time ends {render.when(job.end_deadline, now)}"
        if self.settlement is not None:
            return f"{self.settlement.outcome.name}, {self.settlement.gpu_seconds} GPU-seconds"
        return "-"

    def to_json(self) -> dict[str, Any]:
        job, settled = self.job, self.settlement
        return {
            "job_id": job.job_id,
            "state": job.state.name,
            "chain_state": job.state.name,  # the name `gpumarket client status --json` always had
            "client": job.client,
            "provider": None if job.provider == ZERO_ADDRESS else job.provider,
            "gpu_class": job.gpu_class,
            "gpu_count": job.gpu_count,
            "max_price_per_gpu_second": str(job.max_price_per_gpu_second),
            "price_per_gpu_second": str(job.price_per_gpu_second),
            "max_duration": job.max_duration,
            "accept_deadline": job.accept_deadline,
            "started_at": job.started_at,
            "end_deadline": job.end_deadline,
            "escrow": str(job.escrow),
            "collateral": str(job.collateral),
            "spec_hash": "0x" + job.spec_hash.hex(),
            "now": self.now,
            "expirable_at": self.expirable_at,
            "next": self.next_step(),
            "agent": None if self.agent is None else self.agent.to_json(),
            "provider_state": None if self.agent is None else self.agent.state,
            "settlement": None
            if settled is None
            else {
                "outcome": settled.outcome.name,
                "gpu_seconds": settled.gpu_seconds,
                "provider_payment": str(settled.provider_payment),
                "protocol_fee": str(settled.protocol_fee),
                "client_refund": str(settled.client_refund),
                "slashed": str(settled.slashed),
                "result_hash": "0x" + settled.result_hash.hex(),
                "tx_hash": settled.meta.tx_hash,
            },
        }

    def paid(self, value: int) -> str:
        return render.amount(value, self.payment_token.decimals, self.payment_token.symbol)

    def summary(self) -> str:
        """One line, as `gpumarket client` follows a job: "job 7: chain COMPLETED, provider
        finished, settled COMPLETED (12 gpu-s), command exit status 1"."""
        return JobUpdate(self.job.job_id, self.job.state, self.job.provider, self.agent, self.settlement).describe()

    def render(self) -> str:
        """The summary line, then every field and what to do next."""
        job, now = self.job, self.now
        rows = [
            ("job", job.job_id),
            ("state", job.state.name),
            ("client", job.client),
            ("provider", "any (open job)" if job.provider == ZERO_ADDRESS else job.provider),
            ("gpus", f"{job.gpu_count} of class {job.gpu_class}"),
            ("max price", f"{self.paid(job.max_price_per_gpu_second)} per GPU-second"),
            ("price", f"{self.paid(job.price_per_gpu_second)} per GPU-second" if job.started_at else "-"),
            ("max duration", render.duration(job.max_duration)),
            ("escrow", self.paid(job.escrow)),
            ("accept by", render.when(job.accept_deadline, now)),
            ("started", render.when(job.started_at, now)),
            ("paid time ends", render.when(job.end_deadline, now)),
        ]
        if self.expirable_at:
            rows.append(("expirable", render.when(self.expirable_at, now)))
        if self.agent is not None:
            rows.append(("agent", self.agent.describe()))
        if self.settlement is not None:
            settled = self.settlement
            exit_code = None if self.agent is None else self.agent.exit_code
            rows += [
                (
                    "outcome",
                    f"{settled.outcome.name}, {settled.gpu_seconds} GPU-seconds"
                    + (f", command exit status {exit_code}" if exit_code else ""),
                ),
                ("paid to provider", self.paid(settled.provider_payment)),
                ("refunded to client", self.paid(settled.client_refund)),
                (
                    "slashed",
                    str(settled.slashed)
                    if self.stake_token is None
                    else render.amount(settled.slashed, self.stake_token.decimals, self.stake_token.symbol),
                ),
            ]
        rows.append(("next", self.next_step()))
        return f"{self.summary()}\n\n{render.fields(rows)}"


# The states in which a job's agent has something to say about it that matters: whether it has
# the spec, runs or finished the job; for a completed one, its command's exit status.
_AGENT_STATES = frozenset({JobState.RUNNING, JobState.COMPLETED})


def _statuses(
    market: Market, jobs: Sequence[Job], now: int, *, from_block: int, agent_timeouts: HttpTimeouts | None
) -> list[JobStatus]:
    """The jobs' status views: one settlement scan for all, their agents asked in parallel."""
    settled_ids = {job.job_id for job in jobs if job.state in (JobState.COMPLETED, JobState.FAILED)}
    with guard():
        grace = market.parameters()["settle_grace"]
        settlements = (
            {}
            if not settled_ids
            else {
                event.job_id: event
                for event in scan_events(market, [JobSettled.name], from_block=from_block)
                if isinstance(event, JobSettled) and event.job_id in settled_ids
            }
        )
        asked = [job for job in jobs if job.state in _AGENT_STATES]
        answers = {} if agent_timeouts is None else ask_agents(market, asked, agent_timeouts)
    payment, stake = token_info(market.payment_token), token_info(market.stake_token)
    return [
        JobStatus(job, now, grace, payment, settlements.get(job.job_id), answers.get(job.job_id), stake) for job in jobs
    ]


def status(
    market: Market, job_id: int, *, from_block: int = 0, agent_timeouts: HttpTimeouts | None = None
) -> JobStatus:
    """The job on the chain (no_such_job when it does not exist), its settlement if settled, and
    (given `agent_timeouts`) what its provider's agent says about it."""
    job = _job(market, job_id)
    with guard():
        now = market.block_timestamp()
    return _statuses(market, [job], now, from_block=from_block, agent_timeouts=agent_timeouts)[0]


@dataclass(frozen=True)
class ClientJobs:
    """Every job a client created on the market, read at one block."""

    client: str
    block: int
    now: int
    jobs: tuple[JobStatus, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "block": self.block,
            "now": self.now,
            "jobs": [job.to_json() for job in self.jobs],
        }

    def render(self) -> str:
        head = f"jobs of {self.client} (chain time {render.utc(self.now)}, block {self.block})"
        if not self.jobs:
            return f"{head}: none"
        rows = [
            (
                s.job.job_id,
                s.job.state.name,
                "any" if s.job.provider == ZERO_ADDRESS else s.job.provider,
                s.paid(s.job.escrow),
                s.deadline(),
                "-" if s.agent is None else s.agent.describe(),
            )
            for s in self.jobs
        ]
        steps = [f"  job {s.job.job_id}: {s.next_step()}" for s in self.jobs]
        return "\n".join(
            [
                head,
                "",
                render.table(["job", "state", "provider", "escrow", "deadline", "agent"], rows),
                "",
                "what to do next:",
                *steps,
            ]
        )


def list_jobs(
    market: Market,
    client: str | None = None,
    *,
    from_block: int = 0,
    agent_timeouts: HttpTimeouts | None = None,
    active_only: bool = False,
) -> ClientJobs:
    """The jobs `client` (default: the sender) created, from the market's JobCreated events since
    `from_block` (the deployment's block), each read at one block, with what to do next;
    `active_only` keeps the OPEN and RUNNING ones."""
    client = checksum(client or require_signer(market), "client")
    with guard():
        head = market.w3.eth.get_block("latest")
        block, now = int(head["number"]), int(head["timestamp"])
        ids = [
            event.job_id
            for event in scan_events(market, [JobCreated.name], from_block=from_block, to_block=block)
            if isinstance(event, JobCreated) and event.client == client
        ]
        jobs = [market.get_job(job_id, block=block) for job_id in ids]
    if active_only:
        jobs = [job for job in jobs if not job.state.terminal]
    return ClientJobs(
        client, block, now, tuple(_statuses(market, jobs, now, from_block=from_block, agent_timeouts=agent_timeouts))
    )
