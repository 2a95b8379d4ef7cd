"""A client's job actions, each checked before it is sent, and a job's status.

    market = deployment.market_at(w3, signer=key)
    result = jobs.create(market, spec, gpu_class=1, gpu_count=1, max_price=10**12, max_duration=600,
                         provider=offer_address, approve=True)      # result.details["job_id"]
    jobs.cancel(market, job_id)                                     # an OPEN job of the sender's
    print(jobs.status(market, job_id).render())
    jobs.claim(market)                                              # refunds and payments credited

The chain work is gpumarket.client.jobs.JobClient's (create, cancel, claim, settlement); this
module adds the checks in front of it: the job's terms within the contract's ranges
(escrow.vy create_job), the payment token's balance and allowance for the escrow, and a
directed job's provider able to accept it (registered, verified, not jailed, its class, its
GPUs, its price); for cancel the job's state and client. Provider HTTP is not used here
(`gpumarket client status` asks the agent too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpumarket.actions import render
from gpumarket.actions.common import (
    ActionResult,
    TokenInfo,
    TxRecord,
    checksum,
    require_allowance,
    require_balance,
    require_gas,
    require_signer,
    token_info,
)
from gpumarket.actions.errors import ActionError, guard
from gpumarket.actions.provider import MAX_GPUS, MAX_PRICE
from gpumarket.chain.events import Claimed, JobCancelled, JobCreated, JobSettled
from gpumarket.chain.market import Market
from gpumarket.chain.models import ZERO_ADDRESS, Job, JobState
from gpumarket.client.choose import scan_events
from gpumarket.client.errors import ClientError
from gpumarket.client.jobs import JobClient
from gpumarket.provider.spec import JobSpec

__all__ = ["MAX_ACCEPT_WINDOW", "MAX_JOB_DURATION", "JobStatus", "cancel", "claim", "create", "status"]

# escrow.vy / governance.vy limits.
MAX_JOB_DURATION = 30 * 86_400
MAX_ACCEPT_WINDOW = 30 * 86_400


def _client(market: Market, from_block: int = 0) -> JobClient:
    require_signer(market)
    return JobClient(market, market.signer, from_block=from_block)  # type: ignore[arg-type]


def _check_provider(market: Market, provider: str, gpu_class: int, gpu_count: int, max_price: int) -> None:
    """A directed job's provider could accept it now (registry.vy _price_if_can_serve)."""
    with guard():
        record = market.providers(provider)
        verified = market.is_verified(provider)
    see = "see `gpumarket client providers`, or create an open job"
    if not record.registered:
        raise ActionError(f"provider {provider} is not registered", see, code="not_registered")
    if record.jailed:
        raise ActionError(f"provider {provider} is jailed", see, code="provider_jailed")
    if not verified:
        raise ActionError(f"provider {provider} is not verified (no current hardware report): it cannot accept jobs",
                          see, code="provider_unverified")
    if record.gpu_class != gpu_class:
        raise ActionError(f"provider {provider} offers class {record.gpu_class}, the job needs class {gpu_class}", see,
                          code="wrong_class")
    if record.gpu_count < gpu_count:
        raise ActionError(f"provider {provider} has {record.gpu_count} GPU(s), the job needs {gpu_count}", see,
                          code="not_enough_gpus")
    if record.price_per_gpu_second > max_price:
        raise ActionError(f"provider {provider} asks {record.price_per_gpu_second} per GPU-second, above the job's"
                          f" max {max_price}", f"raise the max price, or {see}", code="price_above_max")


def create(market: Market, spec: JobSpec, *, gpu_class: int, gpu_count: int, max_price: int, max_duration: int,
           provider: str | None = None, accept_window: int = 600, approve: bool = False,
           from_block: int = 0) -> ActionResult:
    """Escrow max_price * gpu_count * max_duration and create the job (provider None: open to
    any). Without an allowance: NeedsApproval, or (approve=True) an approval of the escrow first."""
    sender = require_signer(market)
    with guard():
        listed = 0 < gpu_class < 2**16 and market.class_floor(gpu_class) != 0
        paused = market.paused()
    if paused:
        raise ActionError("the market is paused: no new jobs", "retry once governance unpauses it", code="paused")
    if not listed:
        raise ActionError(f"GPU class {gpu_class} is not listed by this market", "use a listed class (1 = cpu-dev)",
                          code="unknown_class")
    for name, value, upper in (("gpu count", gpu_count, MAX_GPUS), ("max price", max_price, MAX_PRICE),
                               ("max duration", max_duration, MAX_JOB_DURATION),
                               ("accept window", accept_window, MAX_ACCEPT_WINDOW)):
        if not 1 <= value <= upper:
            raise ActionError(f"{name} {value} is outside 1 .. {upper}", f"give a {name} within the contract's range",
                              code="out_of_range")
    if provider is not None:
        provider = checksum(provider, "provider")
        _check_provider(market, provider, gpu_class, gpu_count, max_price)
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
        try:
            job_id = client.create_job(spec, gpu_class=gpu_class, gpu_count=gpu_count, max_price=max_price,
                                       max_duration=max_duration, provider=provider, accept_window=accept_window)
        except ClientError as error:
            raise ActionError(error.args[0], error.hint, code="client_error") from None
        created = _created_event(market, job_id, from_block)
    if created is not None:
        sent.append(TxRecord.from_hash(market, "create_job", created.meta.tx_hash))
    to = provider or "any verified provider"
    return ActionResult(
        "create", f"job {job_id} created for {to}: escrow {render.amount(escrow, info.decimals, info.symbol)}",
        tuple(sent),
        {"job_id": job_id, "client": sender, "provider": provider, "escrow": escrow, "gpu_class": gpu_class,
         "gpu_count": gpu_count, "max_price_per_gpu_second": max_price, "max_duration": max_duration},
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
        raise ActionError(f"job {job_id} does not exist on this market", "check the job id and the deployment",
                          code="no_such_job")
    return job


def cancel(market: Market, job_id: int) -> ActionResult:
    """Cancel the sender's OPEN job; its escrow becomes claimable (`claim`)."""
    sender = require_signer(market)
    job = _job(market, job_id)
    if job.client != sender:
        raise ActionError(f"job {job_id} belongs to {job.client}, not {sender}",
                          "send it from the account that created the job", code="not_client")
    if job.state != JobState.OPEN:
        hints = {
            JobState.RUNNING: "a running job cannot be cancelled: it ends when the committee settles it, or anyone"
                              " may expire it after its paid time and the settle grace",
        }
        raise ActionError(f"job {job_id} is {job.state.name}; only an OPEN job can be cancelled",
                          hints.get(job.state, "it is over: `claim` collects any refund"), code="job_not_open")
    require_gas(market)
    with guard():
        tx = _client(market).cancel(job_id)
    refund = tx.event(JobCancelled).refund
    info = token_info(market.payment_token)
    return ActionResult("cancel", f"job {job_id} cancelled: {render.amount(refund, info.decimals, info.symbol)}"
                        " now claimable (`claim`)", (TxRecord.of("cancel_job", tx),),
                        {"job_id": job_id, "refund": refund})


def claim(market: Market) -> ActionResult:
    """Withdraw everything the market credited to the sender, in both tokens (no transaction
    when nothing is credited)."""
    sender = require_signer(market)
    with guard():
        tokens = {token.address: token_info(token) for token in (market.payment_token, market.stake_token)}
        pending = {address: market.claimable(address, sender) for address in tokens}
    if any(pending.values()):
        require_gas(market)
    before = market.w3.eth.block_number
    with guard():
        claimed = _client(market).claim()
    sent = _claim_txs(market, sender, before)
    text = ", ".join(render.amount(value, tokens[address].decimals, tokens[address].symbol)
                     for address, value in claimed.items())
    return ActionResult("claim", f"claimed {text}" if claimed else "nothing to claim", sent,
                        {"account": sender, "claimed": {address: claimed.get(address, 0) for address in tokens}})


def _claim_txs(market: Market, account: str, after_block: int) -> tuple[TxRecord, ...]:
    return tuple(TxRecord.from_hash(market, "claim", event.meta.tx_hash)
                 for event in scan_events(market, [Claimed.name], from_block=after_block + 1)
                 if isinstance(event, Claimed) and event.account == account)


# ---------------------------------------------------------------------------- status


@dataclass(frozen=True)
class JobStatus:
    """A job as the chain shows it now, its settlement if any, and what can be done next."""

    job: Job
    now: int
    settle_grace: int
    payment_token: TokenInfo
    settlement: JobSettled | None

    @property
    def expirable_at(self) -> int:
        """When anyone may expire the job (escrow.vy expire_job); 0 when it cannot expire."""
        job = self.job
        if job.state == JobState.OPEN:
            return job.accept_deadline + 1
        if job.state == JobState.RUNNING:
            return job.end_deadline + self.settle_grace + 1
        return 0

    def next_step(self) -> str:
        job, now = self.job, self.now
        if job.state == JobState.OPEN:
            if now > job.accept_deadline:
                return "nobody accepted it in time: expire it (`gpumarket client cancel --expire`) for the refund"
            return "waiting for a provider to accept it; the client may cancel it meanwhile"
        if job.state == JobState.RUNNING:
            if now >= self.expirable_at:
                return "not settled within the grace: anyone may expire it (client refunded, collateral released)"
            return "running: the committee settles it after its end challenge"
        return "over: `claim` collects what the market credited"

    def to_json(self) -> dict[str, Any]:
        job, settled = self.job, self.settlement
        return {
            "job_id": job.job_id,
            "state": job.state.name,
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
            "settlement": None if settled is None else {
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

    def render(self) -> str:
        job, now, pay = self.job, self.now, self.payment_token

        def paid(value: int) -> str:
            return render.amount(value, pay.decimals, pay.symbol)

        rows = [
            ("job", job.job_id),
            ("state", job.state.name),
            ("client", job.client),
            ("provider", "any (open job)" if job.provider == ZERO_ADDRESS else job.provider),
            ("gpus", f"{job.gpu_count} of class {job.gpu_class}"),
            ("max price", f"{job.max_price_per_gpu_second} per GPU-second"),
            ("price", f"{job.price_per_gpu_second} per GPU-second" if job.started_at else "-"),
            ("max duration", render.duration(job.max_duration)),
            ("escrow", paid(job.escrow)),
            ("accept by", render.when(job.accept_deadline, now)),
            ("started", render.when(job.started_at, now)),
            ("paid time ends", render.when(job.end_deadline, now)),
        ]
        if self.settlement is not None:
            settled = self.settlement
            rows += [
                ("outcome", f"{settled.outcome.name}, {settled.gpu_seconds} GPU-seconds"),
                ("paid to provider", paid(settled.provider_payment)),
                ("refunded to client", paid(settled.client_refund)),
                ("slashed", str(settled.slashed)),
            ]
        rows.append(("next", self.next_step()))
        return render.fields(rows)


def status(market: Market, job_id: int, *, from_block: int = 0) -> JobStatus:
    """The job on the chain (no_such_job when it does not exist) and its settlement, if settled."""
    job = _job(market, job_id)
    settled = None
    with guard():
        if job.state in (JobState.COMPLETED, JobState.FAILED):
            settled = next((event for event in scan_events(market, [JobSettled.name], from_block=from_block)
                            if isinstance(event, JobSettled) and event.job_id == job_id), None)
        return JobStatus(job, market.block_timestamp(), market.parameters()["settle_grace"],
                         token_info(market.payment_token), settled)
