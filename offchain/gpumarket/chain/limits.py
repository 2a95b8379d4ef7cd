"""The contracts' limits the off-chain side checks before it sends anything, written once.

Each is a `constant` of a module under contracts/modules/ (named in its comment);
tests/chain/test_limits.py reads them out of the Vyper sources and fails when one differs.
Names follow the contracts' except where the Python name says more: MAX_ENDPOINT_BYTES
(registry.vy MAX_ENDPOINT_LENGTH, a String[128] is bytes) and MAX_STAKE (staking.vy LOW_128).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_ACCEPT_WINDOW",
    "MAX_AMOUNT",
    "MAX_COLLATERAL_RATE",
    "MAX_ENDPOINT_BYTES",
    "MAX_GPUS",
    "MAX_HARDWARE_VALIDITY",
    "MAX_JAIL_AFTER_FAILURES",
    "MAX_JOB_DURATION",
    "MAX_MEMBERS",
    "MAX_PRICE",
    "MAX_PROTOCOL_FEE_BPS",
    "MAX_SETTLE_GRACE",
    "MAX_SPOOF_SLASH_BPS",
    "MAX_STAKE",
    "MAX_UNBONDING_PERIOD",
    "MIN_COLLATERAL_BPS",
    "MIN_HARDWARE_VALIDITY",
    "MIN_SETTLE_GRACE",
    "MIN_UNBONDING_PERIOD",
]

_DAY = 86_400

# A provider's claim.
MAX_GPUS: Final = 1_024  # registry.vy MAX_GPUS: GPUs one provider may claim (and a job ask for)
MAX_PRICE: Final = 2**96 - 1  # registry.vy MAX_PRICE: per GPU-second, a claim's price and a job's max price
MAX_ENDPOINT_BYTES: Final = 128  # registry.vy MAX_ENDPOINT_LENGTH: the agent's URL
MAX_STAKE: Final = 2**128 - 1  # staking.vy LOW_128: a provider's free + locked stake

# A job's terms.
MAX_JOB_DURATION: Final = 30 * _DAY  # governance.vy MAX_JOB_DURATION: a job's max_duration
MAX_ACCEPT_WINDOW: Final = 30 * _DAY  # escrow.vy MAX_ACCEPT_WINDOW: accept deadline, from now

# The oracle committee.
MAX_MEMBERS: Final = 31  # committee.vy MAX_MEMBERS: members of one committee

# Governance's parameters (their setters' bounds; the bps ones end at BPS, gpumarket.chain.arithmetic).
MAX_AMOUNT: Final = 2**128 - 1  # governance.vy MAX_AMOUNT: min_stake and a class floor
MAX_COLLATERAL_RATE: Final = 10**36  # governance.vy MAX_COLLATERAL_RATE: collateral_rate
MIN_UNBONDING_PERIOD: Final = 3_600  # governance.vy MIN_UNBONDING_PERIOD: unbonding_period
MAX_UNBONDING_PERIOD: Final = 90 * _DAY  # governance.vy MAX_UNBONDING_PERIOD: unbonding_period
MIN_COLLATERAL_BPS: Final = 500  # governance.vy MIN_COLLATERAL_BPS: collateral_bps
MAX_PROTOCOL_FEE_BPS: Final = 1_000  # governance.vy MAX_PROTOCOL_FEE_BPS: protocol_fee_bps
MAX_SPOOF_SLASH_BPS: Final = 5_000  # governance.vy MAX_SPOOF_SLASH_BPS: spoof_slash_bps
MIN_SETTLE_GRACE: Final = 300  # governance.vy MIN_SETTLE_GRACE: settle_grace
MAX_SETTLE_GRACE: Final = 7 * _DAY  # governance.vy MAX_SETTLE_GRACE: settle_grace
MIN_HARDWARE_VALIDITY: Final = 3_600  # governance.vy MIN_HARDWARE_VALIDITY: hardware_validity
MAX_HARDWARE_VALIDITY: Final = 30 * _DAY  # governance.vy MAX_HARDWARE_VALIDITY: hardware_validity
MAX_JAIL_AFTER_FAILURES: Final = 10  # governance.vy MAX_JAIL_AFTER_FAILURES: jail_after_failures
