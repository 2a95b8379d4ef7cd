"""Governance actions: the oracle committee and the bounded parameters (owner only).

    info = governance.committee_show(market)                  # epoch, members, threshold
    governance.committee_set(owner_market, [m1, m2, m3], 2)   # a new epoch
    table = governance.params_show(market)                    # name -> value and bounds
    governance.params_set(owner_market, "unbonding_period", 7 * 86_400)

Checks before sending: the sender is the market's owner; a committee of 1 .. 31 distinct
non-zero members with a strict-majority threshold (committee.vy _set_committee), and no
test oracle (whose key anyone can derive) on a chain that is not local; a parameter name of
PARAMETER_BOUNDS (gpumarket.chain.params, the contract's bounds) and a value within them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpumarket.actions import render
from gpumarket.actions.common import ActionResult, TxRecord, checksum, require_gas, require_owner
from gpumarket.actions.errors import ActionError, guard
from gpumarket.chain.connection import is_local_chain
from gpumarket.chain.events import CommitteeChanged
from gpumarket.chain.limits import MAX_MEMBERS
from gpumarket.chain.market import Market
from gpumarket.chain.models import ZERO_ADDRESS
from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.testing.committee import is_test_oracle

__all__ = [
    "CommitteeInfo",
    "ParameterRow",
    "committee_set",
    "committee_show",
    "params_set",
    "params_show",
    "render_params",
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
    """Replace the committee (a new epoch: reports signed for the old one stop settling)."""
    require_owner(market)
    checked = _check_committee(market, members, threshold)
    current = committee_show(market)
    if list(current.members) == checked and current.threshold == threshold:
        raise ActionError(
            f"the committee of epoch {current.epoch} already is these members with threshold {threshold}",
            "nothing to change",
            code="no_change",
        )
    require_gas(market)
    with guard():
        tx = market.set_committee(checked, threshold)
    epoch = tx.event(CommitteeChanged).epoch
    return ActionResult(
        "committee_set",
        f"committee epoch {epoch}: {threshold} of {len(checked)}",
        (TxRecord.of("set_committee", tx),),
        {"epoch": epoch, "members": checked, "threshold": threshold},
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
    require_owner(market)
    with guard():
        current = market.parameters()[name]
    if current == value:
        raise ActionError(f"{name} already is {value}", "nothing to change", code="no_change")
    require_gas(market)
    with guard():
        tx = market.set_parameter(name, value)
    return ActionResult(
        "params_set",
        f"{name}: {current:,} -> {value:,}",
        (TxRecord.of(f"set_{name}", tx),),
        {"name": name, "old": current, "value": value},
    )
