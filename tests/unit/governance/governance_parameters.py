"""docs/PROTOCOL.md's parameter table, written out once for the governance tests.

Each row: getter/setter name, the default the constructor sets, and the inclusive
bounds the setter enforces. The only bound docs/PROTOCOL.md leaves open is MIN_STAKE's
upper one ("> 0"); the contract caps every amount at 2**128 - 1 because stakes are
packed into 128-bit fields, so that cap (governance.vy MAX_AMOUNT, as gpumarket.chain.limits
holds it) is the upper bound tested here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumarket.chain.limits import MAX_AMOUNT as MAX_AMOUNT  # test_set_gpu_class.py imports it from here
from helpers.constants import BPS, DAY, HOUR, TOKEN

MINUTE = 60


@dataclass(frozen=True)
class Parameter:
    name: str
    default: int
    lower: int
    upper: int

    @property
    def setter(self) -> str:
        return f"set_{self.name}"


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("min_stake", default=1_000 * TOKEN, lower=1, upper=MAX_AMOUNT),
    Parameter("unbonding_period", default=7 * DAY, lower=HOUR, upper=90 * DAY),
    Parameter("collateral_bps", default=2_000, lower=500, upper=BPS),
    Parameter("collateral_rate", default=10**18, lower=1, upper=10**36),
    Parameter("slash_bps", default=BPS, lower=1, upper=BPS),
    Parameter("client_share_bps", default=5_000, lower=0, upper=BPS),
    Parameter("protocol_fee_bps", default=250, lower=0, upper=1_000),
    Parameter("spoof_slash_bps", default=1_000, lower=0, upper=5_000),
    Parameter("settle_grace", default=HOUR, lower=5 * MINUTE, upper=7 * DAY),
    Parameter("hardware_validity", default=DAY, lower=HOUR, upper=30 * DAY),
    Parameter("jail_after_failures", default=3, lower=1, upper=10),
)

PARAMETER_IDS = [parameter.name for parameter in PARAMETERS]
