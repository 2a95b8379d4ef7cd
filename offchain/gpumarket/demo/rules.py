"""What the protocol says a settled job moves, computed from the rules, not read from the chain.

The rules are contracts/modules/escrow.vy `settle` and staking.vy `_release_collateral` /
`_distribute_slash` (docs/PROTOCOL.md "Jobs"; docs/ARCHITECTURE.md's money table):

- COMPLETED: payment = price x min(gpu_seconds, gpu_count x max_duration); the treasury's fee
  is ceil(payment x protocol_fee_bps / 10,000); the provider gets payment - fee; the client
  gets escrow - payment back; the collateral is unlocked.
- FAILED: the client gets the whole escrow back; slashed = ceil(collateral x slash_bps /
  10,000) of the provider's stake, of which ceil(slashed x client_share_bps / 10,000) goes to
  the client and the rest to the treasury.

and the oracle's metering rule (gpumarket.oracle.jobs): a COMPLETED job's gpu_seconds are the
usage record's metered wall time in whole seconds, rounded down, times the job's gpu_count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gpumarket.chain.arithmetic import ceil_bps, job_collateral
from gpumarket.measure.metering import UsageRecord

__all__ = ["Money", "Terms", "collateral", "completed", "deltas", "failed", "metered_gpu_seconds"]

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Terms:
    """A job's terms as created and accepted (escrow.vy's inputs), and the parameters in force."""

    gpu_count: int
    max_price_per_gpu_second: int
    price_per_gpu_second: int
    max_duration: int
    protocol_fee_bps: int
    collateral_bps: int
    collateral_rate: int
    slash_bps: int
    client_share_bps: int

    @property
    def escrow(self) -> int:
        return self.max_price_per_gpu_second * self.gpu_count * self.max_duration


@dataclass(frozen=True)
class Money:
    """One job's settlement. Payment-token amounts: payment, fee, provider_payment,
    client_refund; stake-token amounts: slashed, client_share, treasury_share."""

    outcome: str
    gpu_seconds: int
    payment: int
    fee: int
    provider_payment: int
    client_refund: int
    slashed: int
    client_share: int
    treasury_share: int


def collateral(terms: Terms) -> int:
    """Stake locked at accept: ceil(price x gpus x max_duration x bps x rate / (10,000 x 1e18))."""
    value = terms.price_per_gpu_second * terms.gpu_count * terms.max_duration
    return job_collateral(value, terms.collateral_bps, terms.collateral_rate)


def metered_gpu_seconds(usage: UsageRecord, gpu_count: int) -> int:
    """The oracle's billable GPU-seconds for a finished job: whole metered seconds x GPUs."""
    return usage.summary.wall_ns // _NS_PER_S * gpu_count


def completed(terms: Terms, gpu_seconds: int) -> Money:
    billed = min(gpu_seconds, terms.gpu_count * terms.max_duration)
    payment = terms.price_per_gpu_second * billed
    fee = ceil_bps(payment, terms.protocol_fee_bps)
    return Money("COMPLETED", billed, payment, fee, payment - fee, terms.escrow - payment, 0, 0, 0)


def failed(terms: Terms) -> Money:
    slashed = ceil_bps(collateral(terms), terms.slash_bps)
    client_share = ceil_bps(slashed, terms.client_share_bps)
    return Money("FAILED", 0, 0, 0, 0, terms.escrow, slashed, client_share, slashed - client_share)


def deltas(
    settled: Iterable[tuple[str, str, Money]], treasury: str, spoof_slashes: Mapping[str, int] | None = None
) -> dict[str, dict[str, int]]:
    """Each account's change in holdings (wallet + claimable + stake) per token ("stake",
    "payment") once jobs (client, provider, money) settled; `spoof_slashes`: stake slashed by
    failed hardware reports (all to the treasury)."""
    change: dict[str, dict[str, int]] = defaultdict(lambda: {"stake": 0, "payment": 0})
    for client, provider, money in settled:
        change[provider]["payment"] += money.provider_payment
        change[provider]["stake"] -= money.slashed
        change[client]["payment"] -= money.payment  # the escrow left and all but the payment came back
        change[client]["stake"] += money.client_share
        change[treasury]["payment"] += money.fee
        change[treasury]["stake"] += money.treasury_share
    for provider, amount in (spoof_slashes or {}).items():
        change[provider]["stake"] -= amount
        change[treasury]["stake"] += amount
    return {account: dict(amounts) for account, amounts in change.items()}
