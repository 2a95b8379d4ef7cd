"""Governance actions: the oracle committee, the bounded parameters, GPU classes, the treasury.

    info = governance.committee_show(market)                  # epoch, members, threshold
    governance.committee_set(owner_market, [m1, m2, m3], 2)   # a new epoch
    table = governance.params_show(market)                    # name -> value and bounds
    governance.params_set(owner_market, "unbonding_period", 7 * 86_400)
    governance.gpu_class_set(owner_market, 6, 1); governance.treasury_set(owner_market, address)

Each change goes through gpumarket.actions.timelock.change: sent at once by the market's owner,
or scheduled on the Timelock that owns a public market (by one of its proposers), to apply
after its delay. Checks before sending: a committee of 1 .. 31 distinct
non-zero members with a strict-majority threshold (committee.vy _set_committee), and no
test oracle (whose key anyone can derive) on a chain that is not local; a parameter name of
PARAMETER_BOUNDS (gpumarket.chain.params, the contract's bounds) and a value within them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gpumarket.actions import render, timelock
from gpumarket.actions.common import ActionResult, checksum
from gpumarket.actions.errors import ActionError, guard
from gpumarket.chain.connection import is_local_chain
from gpumarket.chain.limits import MAX_MEMBERS
from gpumarket.chain.market import Market
from gpumarket.chain.models import ZERO_ADDRESS
from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.chain.timelock import MarketCall
from gpumarket.testing.committee import is_test_oracle

__all__ = [
    "CommitteeInfo",
    "ParameterRow",
    "committee_set",
    "committee_show",
    "gpu_class_set",
    "params_set",
    "params_show",
    "render_params",
    "treasury_set",
]


@dataclass(frozen=True)
class CommitteeInfo:
    """The current oracle committee."""

    epoch: int
    members: tuple[str, ...]
    threshold: int
    owner: str

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "members": list(self.members), "threshold": self.threshold, "owner": self.owner}

    def render(self) -> str:
        head = render.fields(
            [("epoch", self.epoch), ("threshold", f"{self.threshold} of {len(self.members)}"), ("owner", self.owner)]
        )
        return head + "\n\n" + render.table(["#", "member"], [(i, m) for i, m in enumerate(self.members)])


@dataclass(frozen=True)
class ParameterRow:
    """One governance parameter: its value and the contract's bounds."""

    name: str
    value: int
    lower: int
    upper: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": str(self.value), "min": str(self.lower), "max": str(self.upper)}


def committee_show(market: Market) -> CommitteeInfo:
    with guard():
        return CommitteeInfo(market.epoch(), tuple(market.members()), market.threshold(), market.owner())


def _check_committee(market: Market, members: Sequence[str], threshold: int) -> list[str]:
    checked = [checksum(member, "member") for member in members]
    count = len(checked)
    if not 1 <= count <= MAX_MEMBERS:
        raise ActionError(
            f"a committee has 1 .. {MAX_MEMBERS} members, not {count}",
            "give the members' addresses",
            code="bad_committee",
        )
    duplicates = sorted({m for m in checked if checked.count(m) > 1})
    if duplicates:
        raise ActionError(
            f"duplicate member(s): {', '.join(duplicates)}", "list each member once", code="bad_committee"
        )
    if ZERO_ADDRESS in checked:
        raise ActionError("the zero address cannot be a member", "remove it", code="bad_committee")
    if not 1 <= threshold <= count or threshold * 2 <= count:
        raise ActionError(
            f"threshold {threshold} of {count} is not a strict majority",
            f"use a threshold from {count // 2 + 1} to {count}",
            code="bad_threshold",
        )
    with guard():
        local = is_local_chain(market.w3)
    public = [member for member in checked if is_test_oracle(member)]
    if public and not local:
        raise ActionError(
            f"{', '.join(public)}: test oracle(s) whose keys anyone can derive",
            "use the real oracles' addresses on this network",
            code="test_oracle",
        )
    return checked


def committee_set(market: Market, members: Sequence[str], threshold: int) -> ActionResult:
    """Replace the committee (a new epoch: reports signed for the old one stop settling); on a
    timelocked market, schedule the replacement (timelock.change)."""
    governor = timelock.require_governor(market)
    checked = _check_committee(market, members, threshold)
    current = committee_show(market)
    if list(current.members) == checked and current.threshold == threshold:
        raise ActionError(
            f"the committee of epoch {current.epoch} already is these members with threshold {threshold}",
            "nothing to change",
            code="no_change",
        )
    result = timelock.change(
        market,
        MarketCall("set_committee", (checked, threshold)),
        "committee_set",
        f"committee: {threshold} of {len(checked)}",
        {"members": checked, "threshold": threshold},
        lambda: market.set_committee(checked, threshold),
        governor=governor,
    )
    if result.action != "committee_set":  # scheduled: the epoch starts when it is executed
        return result
    with guard():
        epoch = market.epoch()
    return replace(
        result,
        summary=f"committee epoch {epoch}: {threshold} of {len(checked)}",
        details={**result.details, "epoch": epoch},
    )


def params_show(market: Market) -> list[ParameterRow]:
    with guard():
        values = market.parameters()
    return [ParameterRow(name, values[name], *PARAMETER_BOUNDS[name]) for name in PARAMETER_BOUNDS]


def render_params(rows: Sequence[ParameterRow]) -> str:
    return render.table(
        ["parameter", "value", "min", "max"], [(r.name, f"{r.value:,}", f"{r.lower:,}", f"{r.upper:,}") for r in rows]
    )


def params_set(market: Market, name: str, value: int) -> ActionResult:
    """Set one bounded parameter through its setter (`set_<name>`)."""
    if name not in PARAMETER_BOUNDS:
        raise ActionError(
            f"unknown parameter {name!r}", f"one of: {', '.join(PARAMETER_BOUNDS)}", code="unknown_parameter"
        )
    lower, upper = PARAMETER_BOUNDS[name]
    if not lower <= value <= upper:
        raise ActionError(
            f"{name} = {value} is out of bounds", f"{name} must be within {lower:,} .. {upper:,}", code="out_of_bounds"
        )
    governor = timelock.require_governor(market)
    with guard():
        current = market.parameters()[name]
    if current == value:
        raise ActionError(f"{name} already is {value}", "nothing to change", code="no_change")
    return timelock.change(
        market,
        MarketCall(f"set_{name}", (value,)),
        "params_set",
        f"{name}: {current:,} -> {value:,}",
        {"name": name, "old": current, "value": value},
        lambda: market.set_parameter(name, value),
        governor=governor,
    )


def gpu_class_set(market: Market, gpu_class: int, floor_per_gpu_gops: int) -> ActionResult:
    """List a GPU class or change its throughput floor per GPU (GOPS)."""
    if not 1 <= gpu_class <= 2**16 - 1 or floor_per_gpu_gops < 1:
        raise ActionError(
            f"gpu class {gpu_class} with floor {floor_per_gpu_gops}",
            "a class id is 1 .. 65535 and a floor at least 1 GOPS per GPU",
            code="out_of_bounds",
        )
    governor = timelock.require_governor(market)
    with guard():
        current = market.class_floor(gpu_class)
    if current == floor_per_gpu_gops:
        raise ActionError(f"gpu class {gpu_class} already has floor {current:,}", "nothing to change", code="no_change")
    return timelock.change(
        market,
        MarketCall("set_gpu_class", (gpu_class, floor_per_gpu_gops)),
        "gpu_class_set",
        f"gpu class {gpu_class}: floor {current:,} -> {floor_per_gpu_gops:,} GOPS per GPU",
        {"gpu_class": gpu_class, "old": current, "floor_per_gpu_gops": floor_per_gpu_gops},
        lambda: market.set_gpu_class(gpu_class, floor_per_gpu_gops),
        governor=governor,
    )


def treasury_set(market: Market, treasury: str) -> ActionResult:
    """Name the account credited with protocol fees and the treasury's slash shares."""
    new = checksum(treasury, "treasury")
    if new == ZERO_ADDRESS:
        raise ActionError("the treasury cannot be the zero address", "give the treasury's address", code="bad_address")
    governor = timelock.require_governor(market)
    with guard():
        current = market.treasury()
    if current == new:
        raise ActionError(f"the treasury already is {new}", "nothing to change", code="no_change")
    return timelock.change(
        market,
        MarketCall("set_treasury", (new,)),
        "treasury_set",
        f"treasury: {current} -> {new}",
        {"old": current, "treasury": new},
        lambda: market.set_treasury(new),
        governor=governor,
    )
