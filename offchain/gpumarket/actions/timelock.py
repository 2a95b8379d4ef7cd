"""Governance through the market's Timelock: schedule, wait, execute; the guardian's pause.

    governor = timelock.require_governor(market)     # None: the sender owns it; else its Timelock
    result = timelock.change(market, MarketCall("set_slash_bps", (5_000,)), "params_set", ..., governor=governor)
    rows = timelock.operations(market)                 # pending ones, oldest first, with when each applies
    timelock.execute(market, "0x<operation id>")       # once its delay has passed (executors)
    timelock.cancel(market, "0x<operation id>")        # before it is executed (proposers)
    timelock.pause(market); timelock.unpause(market)

A market deployed to a public network is owned by its Timelock (contracts/Timelock.vy). A
change (`change`) is then *scheduled* when the sender is one of its proposers, and applies only
when an executor executes it after the minimum delay; on a market its sender owns directly (a
local chain), the same call is sent at once. Pausing only protects, so a guardian pauses at
once (`pause`); unpausing is a change like any other. Every refusal says who may act instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpumarket.actions import render
from gpumarket.actions.common import ActionResult, TxRecord, chain_now, not_owner, require_gas, require_signer
from gpumarket.actions.errors import ActionError, guard
from gpumarket.chain.market import Market, TxResult
from gpumarket.chain.timelock import (
    CANCELLER_ROLE,
    EXECUTOR_ROLE,
    GUARDIAN_ROLE,
    PROPOSER_ROLE,
    MarketCall,
    Operation,
    Timelock,
)
from gpumarket.chain.timelock import owner_timelock as chain_owner_timelock

__all__ = [
    "cancel",
    "change",
    "execute",
    "operations",
    "owner_timelock",
    "pause",
    "render_operations",
    "require_governor",
    "unpause",
]

ANYONE = "0x" + "00" * 20  # an executor role held by the zero address: anyone may execute


def owner_timelock(market: Market) -> Timelock | None:
    """The Timelock that owns ``market`` (bound to the market's signer), or None (an account owns it)."""
    with guard():
        return chain_owner_timelock(market)


def _require_timelock(market: Market) -> Timelock:
    timelock = owner_timelock(market)
    if timelock is None:
        with guard():
            owner = market.owner()
        raise ActionError(
            f"the market's owner {owner} is not a Timelock: there are no scheduled operations",
            "change the market directly from its owner account",
            code="no_timelock",
        )
    return timelock


def _require_role(timelock: Timelock, role: bytes, sender: str, what: str, *, open_role: bool = False) -> None:
    with guard():
        allowed = timelock.has_role(role, sender) or (open_role and timelock.has_role(role, ANYONE))
    if not allowed:
        raise ActionError(
            f"{sender} is not a {what} of the market's Timelock {timelock.address}",
            f"send it from an account with the {what} role (`gpumarket market verify-deployment` lists the roles)",
            code=f"not_{what}",
        )


def _when(operation: Operation, now: int) -> str:
    if operation.state == "waiting":
        return f"executable from {render.utc(operation.ready_at)} ({render.when(operation.ready_at, now)})"
    return operation.state


def require_governor(market: Market) -> Timelock | None:
    """The sender may change the market: None when it owns the market (changes are sent at once),
    the owning Timelock when it is one of its proposers (changes are scheduled); refused otherwise."""
    sender = require_signer(market)
    with guard():
        owner = market.owner()
    if owner == sender:
        return None
    timelock = owner_timelock(market)
    if timelock is None:
        raise not_owner(sender, owner)
    _require_role(timelock, PROPOSER_ROLE, sender, "proposer")
    return timelock


def change(
    market: Market,
    call: MarketCall,
    action: str,
    summary: str,
    details: dict[str, Any],
    send_now: Callable[[], TxResult],
    *,
    governor: Timelock | None,
) -> ActionResult:
    """Apply ``call`` to the market: at once (``send_now``) when the sender owns it, scheduled on
    its Timelock when the sender is a proposer there. ``governor`` is what require_governor
    returned for this market (the caller checks it before its own checks, and once)."""
    require_gas(market)
    if governor is None:
        with guard():
            tx = send_now()
        return ActionResult(action, summary, (TxRecord.of(call.function, tx),), details)
    with guard():
        operation = governor.schedule(call, market)
        now = chain_now(market)
    return ActionResult(
        f"{action}_scheduled",
        f"scheduled {summary} as operation {operation.hex_id}, {_when(operation, now)};"
        f" then `gpumarket market execute {operation.hex_id}`",
        (TxRecord.from_hash(market, "schedule", operation.scheduled_tx),),
        {**details, "operation": operation.hex_id, "ready_at": operation.ready_at, "timelock": governor.address},
    )


def operations(market: Market, *, include_past: bool = False) -> list[Operation]:
    """The Timelock's operations: pending ones (waiting or ready), or every one with ``include_past``."""
    timelock = _require_timelock(market)
    with guard():
        found = timelock.operations(market)
    return found if include_past else [operation for operation in found if operation.pending]


def render_operations(found: list[Operation], now: int) -> str:
    return (
        render.table(
            ["operation", "change", "state", "applies"],
            [
                (op.hex_id[:18] + "...", op.summary, op.state, render.utc(op.ready_at) if op.pending else "-")
                for op in found
            ],
            empty="(no pending changes)",
        )
        + f"\n\nchain time {render.utc(now)}"
    )


def _operation(market: Market, timelock: Timelock, op_id: str) -> Operation:
    try:
        with guard():
            return timelock.operation(op_id, market)
    except (KeyError, ValueError) as error:
        raise ActionError(
            str(error).strip("'\""), "`gpumarket market pending` lists the operations", code="unknown_operation"
        ) from None


def execute(market: Market, op_id: str) -> ActionResult:
    """Execute a ready operation (executors; anyone when the zero address holds the role)."""
    sender = require_signer(market)
    timelock = _require_timelock(market)
    operation = _operation(market, timelock, op_id)
    now = chain_now(market)
    if operation.state != "ready":
        hint = {
            "waiting": f"wait until {render.utc(operation.ready_at)} ({render.when(operation.ready_at, now)})",
            "done": "it has applied already",
            "cancelled": "schedule it again",
        }[operation.state]
        raise ActionError(
            f"operation {operation.hex_id} ({operation.summary}) is {operation.state}", hint, code="not_ready"
        )
    _require_role(timelock, EXECUTOR_ROLE, sender, "executor", open_role=True)
    require_gas(market)
    with guard():
        tx = timelock.execute(operation, market)
    return ActionResult(
        "execute",
        f"executed {operation.summary} (operation {operation.hex_id})",
        (TxRecord.of("execute", tx),),
        {"operation": operation.hex_id, "change": operation.summary},
    )


def cancel(market: Market, op_id: str) -> ActionResult:
    """Cancel a pending operation (the Timelock's proposers hold the canceller role)."""
    sender = require_signer(market)
    timelock = _require_timelock(market)
    operation = _operation(market, timelock, op_id)
    if not operation.pending:
        raise ActionError(
            f"operation {operation.hex_id} ({operation.summary}) is {operation.state}",
            "only a pending operation can be cancelled",
            code="not_pending",
        )
    _require_role(timelock, CANCELLER_ROLE, sender, "canceller")
    require_gas(market)
    with guard():
        tx = timelock.cancel(operation)
    return ActionResult(
        "cancel",
        f"cancelled {operation.summary} (operation {operation.hex_id})",
        (TxRecord.of("cancel", tx),),
        {"operation": operation.hex_id},
    )


def pause(market: Market) -> ActionResult:
    """Pause the market now: its owner directly, or a guardian of its Timelock."""
    sender = require_signer(market)
    with guard():
        if market.paused():
            raise ActionError("the market is paused already", "nothing to do", code="no_change")
        owner = market.owner()
    if owner == sender:
        require_gas(market)
        with guard():
            tx = market.pause()
        return ActionResult("pause", "market paused", (TxRecord.of("pause", tx),))
    timelock = owner_timelock(market)
    if timelock is None:
        raise not_owner(sender, owner)
    _require_role(timelock, GUARDIAN_ROLE, sender, "guardian")
    require_gas(market)
    with guard():
        tx = timelock.pause_market()
    return ActionResult("pause", f"market paused by guardian {sender}", (TxRecord.of("pause_market", tx),))


def unpause(market: Market) -> ActionResult:
    """Unpause the market: at once by its owner, or scheduled on its Timelock (it waits the delay)."""
    with guard():
        if not market.paused():
            raise ActionError("the market is not paused", "nothing to do", code="no_change")
    governor = require_governor(market)
    return change(market, MarketCall("unpause"), "unpause", "unpause()", {}, market.unpause, governor=governor)
