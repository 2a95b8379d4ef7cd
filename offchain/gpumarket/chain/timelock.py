"""Typed access to a market's Timelock (contracts/Timelock.vy) over web3.

    timelock = Timelock(w3, address, signer=proposer_key)
    op = timelock.schedule(MarketCall("set_slash_bps", (5_000,)), market)   # -> Operation
    timelock.operations(market)                                          # every operation, oldest first
    timelock.execute(op)                                                 # once op.ready_at has passed
    timelock.with_signer(guardian_key).pause_market()                    # no delay: pausing only protects

A public-network market is owned by its Timelock: every change to its parameters, GPU classes,
committee and treasury is an operation scheduled by a proposer, executable by an executor once
the minimum delay has passed, and visible while it waits (`operations`). An operation's id is
snekmate's ``hash_operation(target, 0, payload, predecessor, salt)``; each scheduling here takes a
fresh random salt, so the same change can be scheduled again later, and reads it back from the
``CallSalt`` event to execute.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import Web3Exception

from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.events import block_ranges
from gpumarket.chain.market import BlockId, Market, TxResult, _Bound

__all__ = [
    "CANCELLER_ROLE",
    "DEFAULT_ADMIN_ROLE",
    "EXECUTOR_ROLE",
    "GUARDIAN_ROLE",
    "PROPOSER_ROLE",
    "MarketCall",
    "Operation",
    "Timelock",
    "owner_timelock",
]

PROPOSER_ROLE = keccak(text="PROPOSER_ROLE")
EXECUTOR_ROLE = keccak(text="EXECUTOR_ROLE")
CANCELLER_ROLE = keccak(text="CANCELLER_ROLE")
GUARDIAN_ROLE = keccak(text="GUARDIAN_ROLE")
DEFAULT_ADMIN_ROLE = bytes(32)  # access_control's: who may grant and revoke the other roles
ZERO_BYTES32 = bytes(32)
# snekmate's timestamp of an executed operation.
_DONE_TIMESTAMP = 1


@dataclass(frozen=True)
class MarketCall:
    """One call of the market's owner-only functions, e.g. ``MarketCall("set_treasury", (address,))``."""

    function: str
    args: tuple[Any, ...] = ()

    def payload(self, market: Market) -> bytes:
        return bytes.fromhex(market.contract.encode_abi(self.function, args=list(self.args))[2:])

    def describe(self) -> str:
        return f"{self.function}({', '.join(_show(arg) for arg in self.args)})"

    @classmethod
    def decode(cls, market: Market, payload: bytes) -> MarketCall:
        """The market call a payload encodes (ValueError when it is none of the market's functions)."""
        function, arguments = market.contract.decode_function_input(payload)
        return cls(function.fn_name, tuple(arguments.values()))


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


@dataclass(frozen=True)
class Operation:
    """A scheduled operation and where it stands.

    ``state``: ``waiting`` (before ``ready_at``), ``ready`` (an executor may execute it),
    ``done`` (executed) or ``cancelled``. ``call`` is the market call it makes, or None when
    its target is not the market (the timelock's own roles or delay) or its payload is not a
    market function; ``summary`` says what it does either way."""

    id: bytes
    target: str
    payload: bytes
    predecessor: bytes
    salt: bytes
    delay: int
    ready_at: int
    state: str
    call: MarketCall | None
    summary: str
    scheduled_block: int
    scheduled_tx: str

    @property
    def hex_id(self) -> str:
        return "0x" + self.id.hex()

    @property
    def pending(self) -> bool:
        return self.state in ("waiting", "ready")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.hex_id,
            "target": self.target,
            "call": self.summary,
            "payload": "0x" + self.payload.hex(),
            "salt": "0x" + self.salt.hex(),
            "delay": self.delay,
            "ready_at": self.ready_at,
            "state": self.state,
            "scheduled_block": self.scheduled_block,
            "scheduled_tx": self.scheduled_tx,
        }


class Timelock(_Bound):
    """A market's Timelock: snekmate's timelock controller plus the guardian's pause."""

    CONTRACT = "Timelock"

    def __repr__(self) -> str:
        return f"Timelock({self.address})"

    def market_address(self, *, block: BlockId = "latest") -> str:
        return Web3.to_checksum_address(self._call("MARKET", block=block))

    def minimum_delay(self, *, block: BlockId = "latest") -> int:
        return int(self._call("get_minimum_delay", block=block))

    def has_role(self, role: bytes, account: str, *, block: BlockId = "latest") -> bool:
        return bool(self._call("hasRole", role, Web3.to_checksum_address(account), block=block))

    def role_members(self, role: bytes, *, from_block: int = 0) -> list[str]:
        """Accounts holding ``role`` now, from the RoleGranted events (in order of first grant)."""
        seen: list[str] = []
        for log in self._logs("RoleGranted", from_block):
            account = Web3.to_checksum_address(log["args"]["account"])
            if bytes(log["args"]["role"]) == role and account not in seen:
                seen.append(account)
        return [account for account in seen if self.has_role(role, account)]

    def operation_timestamp(self, op_id: bytes, *, block: BlockId = "latest") -> int:
        return int(self._call("get_timestamp", op_id, block=block))

    def hash_operation(self, target: str, payload: bytes, predecessor: bytes, salt: bytes) -> bytes:
        return bytes(self._call("hash_operation", Web3.to_checksum_address(target), 0, payload, predecessor, salt))

    # ------------------------------------------------------------------ transactions

    def schedule(
        self, call: MarketCall, market: Market, *, delay: int | None = None, salt: bytes | None = None
    ) -> Operation:
        """Schedule ``call`` on ``market`` (proposers only), ``delay`` at least the minimum (the default)."""
        payload = call.payload(market)
        salt = salt if salt is not None else os.urandom(32)
        wait = self.minimum_delay() if delay is None else delay
        self._send("schedule", market.address, 0, payload, ZERO_BYTES32, salt, wait)
        op_id = self.hash_operation(market.address, payload, ZERO_BYTES32, salt)
        return self.operation(op_id, market)

    def execute(self, operation: Operation, market: Market) -> TxResult:
        """Execute a ready operation (executors only); the result carries the market's events."""
        result = self._send("execute", operation.target, 0, operation.payload, operation.predecessor, operation.salt)
        receipt = self.w3.eth.get_transaction_receipt(result.tx_hash)  # type: ignore[arg-type]
        decoded = (market.decoder.decode(raw) for raw in receipt["logs"] if raw["address"] == market.address)
        return replace(result, events=tuple(event for event in decoded if event is not None))

    def cancel(self, operation: Operation) -> TxResult:
        """Cancel a pending operation (cancellers: every proposer)."""
        return self._send("cancel", operation.id)

    def pause_market(self) -> TxResult:
        """Pause the market now (guardians only)."""
        return self._send("pause_market")

    def accept_market_ownership(self) -> TxResult:
        return self._send("accept_market_ownership")

    # ------------------------------------------------------------------ operations

    def operations(self, market: Market, *, from_block: int = 0) -> list[Operation]:
        """Every operation scheduled since ``from_block``, oldest first, with its state now."""
        salts = {bytes(log["args"]["id"]): bytes(log["args"]["salt"]) for log in self._logs("CallSalt", from_block)}
        cancelled = {bytes(log["args"]["id"]) for log in self._logs("Cancelled", from_block)}
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        found: list[Operation] = []
        for log in self._logs("CallScheduled", from_block):
            op_id = bytes(log["args"]["id"])
            found.append(self._operation(op_id, log, salts.get(op_id, ZERO_BYTES32), op_id in cancelled, now, market))
        return found

    def operation(self, op_id: bytes | str, market: Market, *, from_block: int = 0) -> Operation:
        """The operation with this id (a 0x hex string or bytes); KeyError when none was scheduled."""
        wanted = bytes.fromhex(op_id.removeprefix("0x")) if isinstance(op_id, str) else op_id
        for operation in self.operations(market, from_block=from_block):
            if operation.id == wanted:
                return operation
        raise KeyError(f"no operation 0x{wanted.hex()} was scheduled on the timelock {self.address}")

    def _operation(self, op_id: bytes, log: Any, salt: bytes, cancelled: bool, now: int, market: Market) -> Operation:
        args = log["args"]
        target = Web3.to_checksum_address(args["target"])
        payload = bytes(args["payload"])
        timestamp = self.operation_timestamp(op_id)
        if timestamp > _DONE_TIMESTAMP:  # pending: snekmate keeps the time it becomes ready
            ready_at = timestamp
        else:  # executed or cancelled: when it was (or would have been) ready
            ready_at = int(self.w3.eth.get_block(int(log["blockNumber"]))["timestamp"]) + int(args["delay"])
        if timestamp == _DONE_TIMESTAMP:
            state = "done"
        elif cancelled and timestamp == 0:
            state = "cancelled"
        else:
            state = "ready" if now >= ready_at else "waiting"
        call = self._market_call(market, target, payload)
        return Operation(
            id=op_id,
            target=target,
            payload=payload,
            predecessor=bytes(args["predecessor"]),
            salt=salt,
            delay=int(args["delay"]),
            ready_at=ready_at,
            state=state,
            call=call,
            summary=self._summary(target, payload, call),
            scheduled_block=int(log["blockNumber"]),
            scheduled_tx="0x" + bytes(log["transactionHash"]).hex(),
        )

    def _market_call(self, market: Market, target: str, payload: bytes) -> MarketCall | None:
        if target != market.address:
            return None
        try:
            return MarketCall.decode(market, payload)
        except ValueError:
            return None

    def _summary(self, target: str, payload: bytes, call: MarketCall | None) -> str:
        if call is not None:
            return call.describe()
        if target == self.address:
            try:
                function, arguments = self.contract.decode_function_input(payload)
                return f"timelock.{MarketCall(function.fn_name, tuple(arguments.values())).describe()}"
            except ValueError:
                pass
        return f"call {target} with 0x{payload.hex()}"

    def _logs(self, event: str, from_block: int) -> list[Any]:
        decoder = getattr(self.contract.events, event)
        return [
            log
            for low, high in block_ranges(from_block, self.w3.eth.block_number)
            for log in decoder.get_logs(from_block=low, to_block=high)
        ]


def owner_timelock(market: Market, *, block: BlockId = "latest") -> Timelock | None:
    """The Timelock that owns ``market`` at ``block``, bound to the market's signer; None when the
    owner is an account, or a contract that is not this market's Timelock (a multisig)."""
    owner = market.owner(block=block)
    if not market.w3.eth.get_code(owner, block):  # type: ignore[arg-type]
        return None
    timelock = Timelock(
        market.w3, owner, signer=market.signer, artifacts=market.artifacts, tx_settings=market.tx_settings
    )
    try:
        governs = timelock.market_address(block=block) == market.address
    except (ContractRevert, Web3Exception):  # a contract with no MARKET() to call
        return None
    return timelock if governs else None


def deploy_arguments(
    market: str, minimum_delay: int, proposers: Sequence[str], executors: Sequence[str], guardians: Sequence[str]
) -> list[Any]:
    """The Timelock constructor's arguments, in order."""
    return [
        Web3.to_checksum_address(market),
        minimum_delay,
        [Web3.to_checksum_address(a) for a in proposers],
        [Web3.to_checksum_address(a) for a in executors],
        [Web3.to_checksum_address(a) for a in guardians],
    ]
