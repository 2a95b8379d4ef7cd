"""The contracts' money arithmetic, written once off-chain (contracts/modules/escrow.vy and
staking.vy): basis-point shares and the collateral a job locks. Every share rounds up, against
the charged party and in favour of the protocol and the client, as on chain; the client's
provider choice, the demo's rules and the walkthrough all compute with these.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BPS", "RATE_SCALE", "ceil_bps", "job_collateral"]

BPS: Final = 10_000  # basis points in a whole
RATE_SCALE: Final = 10**18  # collateral_rate's fixed point: 1e18 = one stake unit per payment unit


def ceil_bps(amount: int, bps: int) -> int:
    """``amount`` x ``bps`` / 10,000, rounded up."""
    return -(-amount * bps // BPS)


def job_collateral(job_value: int, collateral_bps: int, collateral_rate: int) -> int:
    """Stake-token units accept_job locks for a job worth ``job_value`` payment units (price x
    GPUs x max_duration): ceil(value x bps x rate / (10,000 x 1e18)), escrow.vy's ``_collateral``."""
    return -(-job_value * collateral_bps * collateral_rate // (BPS * RATE_SCALE))
