"""A provider's actions on the market, each checked before it is sent, and its status.

    market = deployment.market_at(w3, signer=key)
    provider.register(market, gpu_class=1, gpu_count=1, price=10**12, endpoint="https://gpu.example:8700")
    provider.stake(market, 2_000 * 10**18, approve=True)     # approve=False: NeedsApproval if missing
    provider.request_unstake(market, 500 * 10**18)
    provider.withdraw(market)                                # refused until the release time
    print(provider.status(market, key.address).render())

The checks mirror the contract's (contracts/modules/registry.vy, staking.vy; the limits are
gpumarket.chain.limits'): a listed GPU class, 1 .. 1,024 GPUs and no fewer than running jobs
hold, a price of 1 .. 2**96 - 1, an endpoint of 1 .. 128 bytes (and an http(s) URL, which the
clients need), the stake token's balance and allowance, the free stake an unstake takes, and
the release time of the unbonding stake. Each refusal is an
ActionError whose hint says what to do; nothing is sent when a check fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

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
from gpumarket.agentapi.client import AgentHealth, HttpTimeouts, probe_agent
from gpumarket.chain.events import JobAccepted, JobCreated, UnstakeRequested, scan_events
from gpumarket.chain.limits import MAX_ENDPOINT_BYTES, MAX_GPUS, MAX_PRICE, MAX_STAKE
from gpumarket.chain.market import Market
from gpumarket.chain.models import JobState, ProviderRecord, StakeInfo
from gpumarket.measure.classes import class_by_id

__all__ = [
    "ProviderJob",
    "ProviderStatus",
    "register",
    "request_unstake",
    "stake",
    "status",
    "update",
    "withdraw",
]


def _class_name(gpu_class: int) -> str:
    try:
        return class_by_id(gpu_class).name
    except (KeyError, ValueError):
        return f"class {gpu_class}"


def _check_claim(market: Market, gpu_class: int, gpu_count: int, price: int, endpoint: str) -> None:
    """registry.vy's _check_claim, plus an http(s) endpoint (the clients and oracles call it)."""
    with guard():
        floor = market.class_floor(gpu_class) if 0 < gpu_class < 2**16 else 0
    if floor == 0:
        raise ActionError(
            f"GPU class {gpu_class} is not listed by this market",
            "use a listed class (the deployment's gpu_classes, e.g. 1 = cpu-dev)",
            code="unknown_class",
        )
    if not 1 <= gpu_count <= MAX_GPUS:
        raise ActionError(
            f"gpu count {gpu_count} is outside 1 .. {MAX_GPUS}", "claim the GPUs this machine has", code="out_of_range"
        )
    if not 1 <= price <= MAX_PRICE:
        raise ActionError(
            f"price {price} is outside 1 .. 2**96 - 1 (payment base units per GPU-second)",
            "give the price per GPU-second in payment-token base units",
            code="out_of_range",
        )
    size = len(endpoint.encode())
    if not 1 <= size <= MAX_ENDPOINT_BYTES:
        raise ActionError(
            f"endpoint is {size} bytes; the contract takes 1 .. {MAX_ENDPOINT_BYTES}",
            "give the agent's public URL",
            code="bad_endpoint",
        )
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ActionError(
            f"endpoint {endpoint!r} is not an http(s) URL",
            "give the URL clients and oracles reach the agent at, e.g. https://host:8700",
            code="bad_endpoint",
        )


def _record(market: Market, address: str) -> ProviderRecord:
    with guard():
        return market.providers(address)


def register(market: Market, gpu_class: int, gpu_count: int, price: int, endpoint: str) -> ActionResult:
    """Register the sender as a provider (it takes jobs once a hardware report verifies it)."""
    sender = require_signer(market)
    if _record(market, sender).registered:
        raise ActionError(
            f"{sender} is already registered",
            "use `update` to change the claim, price or endpoint",
            code="already_registered",
        )
    _check_claim(market, gpu_class, gpu_count, price, endpoint)
    require_gas(market)
    with guard():
        tx = market.register(gpu_class, gpu_count, price, endpoint)
    return ActionResult(
        "register",
        f"registered {sender}: {gpu_count} x {_class_name(gpu_class)} at {price} per GPU-second, {endpoint}"
        " (verified once the committee's hardware report lands; stake before taking jobs)",
        (TxRecord.of("register", tx),),
        {
            "provider": sender,
            "gpu_class": gpu_class,
            "gpu_count": gpu_count,
            "price_per_gpu_second": price,
            "endpoint": endpoint,
        },
    )


def update(
    market: Market,
    *,
    gpu_class: int | None = None,
    gpu_count: int | None = None,
    price: int | None = None,
    endpoint: str | None = None,
) -> ActionResult:
    """Change the sender's claim, price or endpoint (None keeps the current value). A changed
    class or GPU count voids the verification until the next hardware report."""
    sender = require_signer(market)
    current = _record(market, sender)
    if not current.registered:
        raise ActionError(f"{sender} is not registered", "register first", code="not_registered")
    new_class = current.gpu_class if gpu_class is None else gpu_class
    new_count = current.gpu_count if gpu_count is None else gpu_count
    new_price = current.price_per_gpu_second if price is None else price
    new_endpoint = current.endpoint if endpoint is None else endpoint
    if (new_class, new_count, new_price, new_endpoint) == (
        current.gpu_class,
        current.gpu_count,
        current.price_per_gpu_second,
        current.endpoint,
    ):
        raise ActionError(
            "nothing to change: the record already says so",
            "give a new --class, --gpus, --price or --endpoint",
            code="no_change",
        )
    _check_claim(market, new_class, new_count, new_price, new_endpoint)
    with guard():
        in_use = market.gpus_in_use(sender)
    if new_count < in_use:
        raise ActionError(
            f"running jobs hold {in_use} GPU(s); the count cannot drop below that",
            f"claim at least {in_use} GPUs, or wait for the running jobs to end",
            code="gpus_in_use",
        )
    require_gas(market)
    voids = (new_class, new_count) != (current.gpu_class, current.gpu_count)
    with guard():
        tx = market.update_provider(new_class, new_count, new_price, new_endpoint)
    summary = f"updated {sender}: {new_count} x {_class_name(new_class)} at {new_price} per GPU-second, {new_endpoint}"
    if voids and current.verified_until:
        summary += " (the class or GPU count changed: unverified until the next hardware report)"
    return ActionResult(
        "update",
        summary,
        (TxRecord.of("update_provider", tx),),
        {
            "provider": sender,
            "gpu_class": new_class,
            "gpu_count": new_count,
            "price_per_gpu_second": new_price,
            "endpoint": new_endpoint,
            "voids_verification": voids,
        },
    )


def stake(market: Market, amount: int, *, approve: bool = False) -> ActionResult:
    """Add `amount` of the stake token to the sender's free stake. Without an allowance:
    NeedsApproval, or (approve=True) an approval of exactly `amount` first."""
    sender = require_signer(market)
    if amount <= 0:
        raise ActionError(
            "the amount to stake must be positive", "give an amount in stake-token base units", code="bad_amount"
        )
    with guard():
        current = market.stake_of(sender)
        min_stake = market.parameters()["min_stake"] if not current.free else 0
    if current.free + current.locked + amount > MAX_STAKE:
        raise ActionError("free + locked stake would exceed 2**128 - 1", "stake less", code="out_of_range")
    token = market.stake_token
    info = require_balance(market, token, amount, "staking")
    require_gas(market)
    sent: list[TxRecord] = []
    approval = require_allowance(market, token, amount, auto_approve=approve)
    if approval is not None:
        sent.append(approval)
    with guard():
        sent.append(TxRecord.of("stake", market.stake(amount)))
    free = current.free + amount
    summary = (
        f"staked {render.amount(amount, info.decimals, info.symbol)}; free stake now "
        f"{render.amount(free, info.decimals, info.symbol)}"
    )
    if min_stake and free < min_stake:
        summary += (
            f" (below the market's min stake {render.amount(min_stake, info.decimals, info.symbol)}:"
            " not enough to take jobs yet)"
        )
    return ActionResult(
        "stake", summary, tuple(sent), {"provider": sender, "amount": amount, "free": free, "token": info.address}
    )


def request_unstake(market: Market, amount: int) -> ActionResult:
    """Move `amount` of free stake to unbonding; it is withdrawable after the unbonding period
    (a new request adds to the unbonding stake and restarts its clock)."""
    sender = require_signer(market)
    if amount <= 0:
        raise ActionError(
            "the amount to unstake must be positive", "give an amount in stake-token base units", code="bad_amount"
        )
    with guard():
        current = market.stake_of(sender)
        period = market.parameters()["unbonding_period"]
    info = token_info(market.stake_token)
    if current.free < amount:
        locked = (
            f", {render.amount(current.locked, info.decimals, info.symbol)} locked by running jobs"
            if current.locked
            else ""
        )
        raise ActionError(
            f"unstaking {render.amount(amount, info.decimals, info.symbol)} needs that much free stake; "
            f"{sender} has {render.amount(current.free, info.decimals, info.symbol)} free{locked}",
            f"unstake at most {current.free} (locked stake frees up when its jobs settle)",
            code="insufficient_free_stake",
        )
    require_gas(market)
    with guard():
        tx = market.request_unstake(amount)
    event = tx.event(UnstakeRequested)
    summary = (
        f"unbonding {render.amount(event.unbonding_total, info.decimals, info.symbol)}; withdraw after "
        f"{render.utc(event.release_at)} (in {render.duration(period)})"
    )
    if current.unbonding:
        summary += "; the earlier unbonding stake's clock restarted with it"
    return ActionResult(
        "unstake",
        summary,
        (TxRecord.of("request_unstake", tx),),
        {"provider": sender, "amount": amount, "unbonding": event.unbonding_total, "release_at": event.release_at},
    )


def withdraw(market: Market) -> ActionResult:
    """Pay out the sender's unbonding stake once its release time passed."""
    sender = require_signer(market)
    with guard():
        current = market.stake_of(sender)
    if current.unbonding == 0:
        raise ActionError(
            f"{sender} has no unbonding stake",
            "request an unstake first, then withdraw after the unbonding period",
            code="nothing_unbonding",
        )
    now = chain_now(market)
    if now < current.release_at:
        wait = current.release_at - now
        raise ActionError(
            f"the unbonding stake ({current.unbonding}) is not released yet",
            f"withdraw after {render.utc(current.release_at)}, in {wait} s ({render.duration(wait)})",
            code="not_released",
        )
    require_gas(market)
    with guard():
        tx = market.withdraw()
    info = token_info(market.stake_token)
    return ActionResult(
        "withdraw",
        f"withdrew {render.amount(current.unbonding, info.decimals, info.symbol)}",
        (TxRecord.of("withdraw", tx),),
        {"provider": sender, "amount": current.unbonding},
    )


# ---------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ProviderJob:
    """A job directed to or accepted by the provider, as the chain shows it now."""

    job_id: int
    state: JobState
    client: str
    gpu_count: int
    price_per_gpu_second: int
    collateral: int
    started_at: int
    end_deadline: int

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state.name,
            "client": self.client,
            "gpu_count": self.gpu_count,
            "price_per_gpu_second": str(self.price_per_gpu_second),
            "collateral": str(self.collateral),
            "started_at": self.started_at,
            "end_deadline": self.end_deadline,
        }


@dataclass(frozen=True)
class ProviderStatus:
    """Everything the market holds about one provider, read at one block."""

    address: str
    block: int
    now: int
    record: ProviderRecord
    verified: bool
    gpus_in_use: int  # held by its running jobs (registry.gpus_in_use)
    stake: StakeInfo
    min_stake: int
    stake_token: TokenInfo
    payment_token: TokenInfo
    claimable: dict[str, int]  # token address -> amount credited to the provider
    jobs: tuple[ProviderJob, ...] = field(default=())
    agent: AgentHealth | None = None  # its agent's GET /health at the endpoint; None: not asked

    @property
    def released(self) -> bool:
        return self.stake.unbonding != 0 and self.now >= self.stake.release_at

    @property
    def running_jobs(self) -> tuple[ProviderJob, ...]:
        return tuple(job for job in self.jobs if job.state == JobState.RUNNING)

    def problems(self) -> list[str]:
        """Why the provider cannot take a job now, each with what to do (empty: it can)."""
        found = []
        if not self.record.registered:
            return ["not registered: `gpumarket provider register`"]
        if self.record.jailed:
            found.append("jailed after repeated failed jobs: ask governance to unjail it")
        if not self.verified:
            found.append("hardware not verified: run the agent (`gpumarket provider run`) so the committee measures it")
        if self.stake.free < self.min_stake:
            found.append(f"free stake {self.stake.free} is below the min stake {self.min_stake}: stake more")
        agent = self.agent
        if agent is not None and not agent.answered:
            found.append(
                f"the agent at {self.record.endpoint} does not answer ({agent.error}): run it"
                " (`gpumarket provider run`) or fix the endpoint (`gpumarket provider update --endpoint`)"
            )
        if self.gpus_in_use >= self.record.gpu_count:
            found.append(
                f"all {self.record.gpu_count} GPU(s) it claims are held by running jobs: it takes a new job"
                " once one ends"
            )
        elif agent is not None and agent.answered and not agent.can_run(1):
            found.append(
                f"all {agent.gpus} GPU(s) of the agent are held by running jobs: it takes a new job once one ends"
            )
        return found

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "address": self.address,
            "block": self.block,
            "now": self.now,
            "registered": record.registered,
            "gpu_class": record.gpu_class,
            "gpu_class_name": _class_name(record.gpu_class) if record.registered else None,
            "gpu_count": record.gpu_count,
            "price_per_gpu_second": str(record.price_per_gpu_second),
            "endpoint": record.endpoint,
            "verified": self.verified,
            "verified_until": record.verified_until,
            "jailed": record.jailed,
            "claim_version": record.claim_version,
            "gpus_in_use": self.gpus_in_use,
            "recent_failures": record.recent_failures,
            "failure_window_start": record.failure_window_start,
            "stake": {
                "free": str(self.stake.free),
                "locked": str(self.stake.locked),
                "unbonding": str(self.stake.unbonding),
                "release_at": self.stake.release_at,
                "released": self.released,
                "min_stake": str(self.min_stake),
                "token": self.stake_token.address,
            },
            "claimable": {token: str(value) for token, value in self.claimable.items()},
            "jobs": [job.to_json() for job in self.jobs],
            "agent": None if self.agent is None else self.agent.to_json(),
            "problems": self.problems(),
        }

    def render(self) -> str:
        """The terminal view: the record, the stake, the balances, the jobs."""
        record, stake_, now = self.record, self.stake, self.now
        st = self.stake_token

        def staked(value: int) -> str:
            return render.amount(value, st.decimals, st.symbol)

        if not record.registered:
            head = [("provider", self.address), ("registered", "no")]
        else:
            verified = (
                f"yes, until {render.when(record.verified_until, now)}"
                if self.verified
                else f"no (expired {render.when(record.verified_until, now)})"
                if record.verified_until
                else "no"
            )
            head = [
                ("provider", self.address),
                (
                    "claim",
                    f"{record.gpu_count} x {_class_name(record.gpu_class)} (class {record.gpu_class}),"
                    f" version {record.claim_version}",
                ),
                ("gpus in use", f"{self.gpus_in_use} of {record.gpu_count} (held by running jobs)"),
                ("price", f"{record.price_per_gpu_second} {self.payment_token.symbol} base units per GPU-second"),
                ("endpoint", record.endpoint),
                ("agent", "not asked" if self.agent is None else self.agent.describe()),
                ("verified", verified),
                (
                    "jailed",
                    f"yes ({record.recent_failures} failures)"
                    if record.jailed
                    else f"no ({record.recent_failures} failures in the window since "
                    f"{render.when(record.failure_window_start, now)})"
                    if record.recent_failures
                    else "no",
                ),
            ]
        if stake_.unbonding:
            release = render.when(stake_.release_at, now) + ("; withdraw now" if self.released else "")
        else:
            release = "-"
        stake_rows = [
            ("free", staked(stake_.free), f"min stake {staked(self.min_stake)}"),
            ("locked", staked(stake_.locked), f"collateral of {len(self.running_jobs)} running job(s)"),
            ("unbonding", staked(stake_.unbonding), f"release {release}"),
        ]
        claim_rows = [
            (token.symbol, render.amount(self.claimable.get(token.address, 0), token.decimals, token.symbol))
            for token in (self.payment_token, self.stake_token)
        ]
        job_rows = [
            (
                job.job_id,
                job.state.name,
                job.client,
                job.gpu_count,
                job.price_per_gpu_second,
                staked(job.collateral),
                render.when(job.end_deadline, now) if job.end_deadline else "-",
            )
            for job in self.jobs
        ]
        parts = [
            render.fields(head),
            "",
            render.table(["stake", "amount", "note"], stake_rows),
            "",
            render.table(["claimable", "amount"], claim_rows),
            "",
            "jobs:",
            render.table(["job", "state", "client", "gpus", "price", "collateral", "paid time ends"], job_rows),
        ]
        problems = self.problems()
        verdict = (
            "no" if problems else "yes" if self.agent is not None else "yes, by the chain (its agent was not asked)"
        )
        parts += ["", f"can take jobs: {verdict}", *(f"  - {p}" for p in problems)]
        return "\n".join(parts)


def _provider_jobs(market: Market, address: str, block: int, from_block: int) -> tuple[ProviderJob, ...]:
    """The jobs directed to the provider (JobCreated) or accepted by it (JobAccepted)."""
    ids: dict[int, None] = {}
    for event in scan_events(market, [JobCreated.name, JobAccepted.name], from_block=from_block, to_block=block):
        if isinstance(event, (JobCreated, JobAccepted)) and event.provider == address:
            ids[event.job_id] = None
    jobs = []
    for job_id in sorted(ids):
        job = market.get_job(job_id, block=block)
        if job.provider != address:  # an open job accepted by another provider
            continue
        jobs.append(
            ProviderJob(
                job.job_id,
                job.state,
                job.client,
                job.gpu_count,
                job.price_per_gpu_second or job.max_price_per_gpu_second,
                job.collateral,
                job.started_at,
                job.end_deadline,
            )
        )
    return tuple(jobs)


def status(
    market: Market, address: str | None = None, *, from_block: int = 0, agent_timeouts: HttpTimeouts | None = None
) -> ProviderStatus:
    """`address`'s standing (default: the sender), every read at one block. `from_block`
    (the deployment's block) bounds the event scan for its jobs; given `agent_timeouts`, its
    agent is asked at its endpoint whether it runs and has a GPU free (the chain cannot say)."""
    address = address or require_signer(market)
    address = checksum(address)
    with guard():
        block_data = market.w3.eth.get_block("latest")
        block, now = int(block_data["number"]), int(block_data["timestamp"])
        stake_token, payment_token = market.stake_token, market.payment_token
        record = market.providers(address, block=block)
        agent = probe_agent(record.endpoint, agent_timeouts) if agent_timeouts and record.registered else None
        return ProviderStatus(
            address=address,
            block=block,
            now=now,
            record=record,
            verified=market.is_verified(address, block=block),
            gpus_in_use=market.gpus_in_use(address, block=block),
            stake=market.stake_of(address, block=block),
            min_stake=int(market.parameters(block=block)["min_stake"]),
            stake_token=token_info(stake_token),
            payment_token=token_info(payment_token),
            claimable={
                token.address: market.claimable(token, address, block=block) for token in (payment_token, stake_token)
            },
            jobs=_provider_jobs(market, address, block, from_block),
            agent=agent,
        )
