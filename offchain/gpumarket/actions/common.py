"""What every action shares: its result, the token pre-checks, approval, the sender checks.

    result = actions.provider.stake(market, amount, approve=True)
    result.tx_hash, result.to_json(), result.summary

An ActionResult records the transactions an action sent (an approval first, when it made
one) and the amounts it moved, as ints; `to_json` writes amounts as decimal strings (they
exceed JSON's safe integers). Pre-checks read the chain at the latest block; a state that
changes between the check and the transaction still surfaces as the contract's reason
(errors.guard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from gpumarket.actions import render
from gpumarket.actions.errors import ActionError, NeedsApproval, guard
from gpumarket.chain.market import Market, Token, TxResult

__all__ = [
    "ActionResult",
    "TokenInfo",
    "TxRecord",
    "approve",
    "chain_now",
    "checksum",
    "not_owner",
    "require_allowance",
    "require_balance",
    "require_gas",
    "require_owner",
    "require_signer",
    "token_info",
]


@dataclass(frozen=True)
class TxRecord:
    """One mined transaction of an action."""

    label: str
    tx_hash: str
    block: int
    gas_used: int

    @classmethod
    def of(cls, label: str, result: TxResult) -> TxRecord:
        return cls(label, result.tx_hash, result.block_number, result.gas_used)

    @classmethod
    def from_hash(cls, market: Market, label: str, tx_hash: str) -> TxRecord:
        """The record of a transaction sent by code that returned no TxResult (its receipt)."""
        receipt = market.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        return cls(label, tx_hash, int(receipt["blockNumber"]), int(receipt["gasUsed"]))

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "tx_hash": self.tx_hash, "block": self.block, "gas_used": self.gas_used}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


@dataclass(frozen=True)
class ActionResult:
    """What an action did: `summary` for people, `details` (amounts, ids) for scripts.
    `transactions` holds every transaction it sent, the main one last (none: nothing to do)."""

    action: str
    summary: str
    transactions: tuple[TxRecord, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def tx_hash(self) -> str | None:
        """The main transaction's hash (None when the action had nothing to send)."""
        return self.transactions[-1].tx_hash if self.transactions else None

    @property
    def approve_tx_hash(self) -> str | None:
        found = [tx.tx_hash for tx in self.transactions if tx.label == "approve"]
        return found[0] if found else None

    def to_json(self) -> dict[str, Any]:
        """{"action", "tx_hash", "approve_tx_hash", "transactions", **details}; ints as strings,
        except the small counters (job_id, block, gas_used, times) which stay numbers."""
        details = {key: value if key in _NUMERIC_KEYS else _jsonable(value) for key, value in self.details.items()}
        return {
            "action": self.action,
            "summary": self.summary,
            "tx_hash": self.tx_hash,
            "approve_tx_hash": self.approve_tx_hash,
            "transactions": [tx.to_json() for tx in self.transactions],
            **details,
        }


# Values that always fit a JSON number: ids, counts, unix times, basis points.
_NUMERIC_KEYS = frozenset(
    {
        "job_id",
        "epoch",
        "threshold",
        "gpu_class",
        "gpu_count",
        "release_at",
        "ready_at",
        "started_at",
        "accept_deadline",
        "max_duration",
        "verified_until",
        "now",
    }
)


@dataclass(frozen=True)
class TokenInfo:
    """A token's address, symbol and decimals (for messages and rendering)."""

    address: str
    symbol: str
    decimals: int


def token_info(token: Token) -> TokenInfo:
    with guard():
        return TokenInfo(token.address, token.symbol(), token.decimals())


def checksum(address: str, what: str = "address") -> str:
    """`address` EIP-55 checksummed; ActionError ("bad_address") when it is not one."""
    try:
        return Web3.to_checksum_address(str(address).strip())
    except ValueError:
        raise ActionError(
            f"{what} {address!r} is not a 20-byte 0x-prefixed address",
            "give the account's 0x... address",
            code="bad_address",
        ) from None


def chain_now(market: Market) -> int:
    """The latest block's timestamp: the clock the contract's time checks use."""
    return market.block_timestamp()


def require_signer(market: Market) -> str:
    """The sending account; a usage error when the market is read-only."""
    if market.sender is None:
        raise ActionError(
            "this action sends a transaction and no key was given", "give the sender's key (--key)", code="no_signer"
        )
    return market.sender


def require_gas(market: Market) -> None:
    """The sender holds some ether to pay gas (the exact cost is the node's estimate)."""
    sender = require_signer(market)
    if int(market.w3.eth.get_balance(sender)) == 0:  # type: ignore[arg-type]
        raise ActionError(
            f"{sender} holds no ether to pay gas", "fund the account with the chain's native coin", code="no_gas"
        )


def require_balance(market: Market, token: Token, amount: int, what: str) -> TokenInfo:
    """The sender holds at least `amount` of `token`; InsufficientBalance ("insufficient_balance") otherwise."""
    sender = require_signer(market)
    info = token_info(token)
    with guard():
        held = token.balance_of(sender)
    if held < amount:

        def show(value: int) -> str:
            return f"{render.amount(value, info.decimals, info.symbol)} ({value} base units)"

        raise ActionError(
            f"{what} needs {show(amount)} and {sender} holds {show(held)}",
            f"get at least {show(amount - held)} of {info.address} into this account",
            code="insufficient_balance",
        )
    return info


def require_allowance(market: Market, token: Token, amount: int, *, auto_approve: bool) -> TxRecord | None:
    """The market may pull `amount` of `token` from the sender: approve it (exactly `amount`)
    when `auto_approve`, else raise NeedsApproval. Returns the approval sent, if any."""
    sender = require_signer(market)
    with guard():
        allowance = token.allowance(sender, market.address)
    if allowance >= amount:
        return None
    if not auto_approve:
        raise NeedsApproval(
            token=token.address,
            symbol=token_info(token).symbol,
            spender=market.address,
            amount=amount,
            allowance=allowance,
        )
    return approve(market, token, amount)


def approve(market: Market, token: Token | str, amount: int) -> TxRecord:
    """Let the market pull `amount` of `token` (a Token or its address) from the sender."""
    require_signer(market)
    signer = market.signer
    assert signer is not None  # require_signer refused a read-only market
    bound = token.with_signer(signer) if isinstance(token, Token) else Token(market.w3, token, signer=signer)
    if bound.address not in (market.stake_token.address, market.payment_token.address):
        raise ActionError(
            f"{bound.address} is neither the market's stake token nor its payment token",
            "approve the token the action names",
            code="unknown_token",
        )
    with guard():
        return TxRecord.of("approve", bound.approve(market.address, amount))


def require_owner(market: Market) -> str:
    """The sender is the market's owner (governance actions)."""
    sender = require_signer(market)
    with guard():
        owner = market.owner()
    if owner != sender:
        raise not_owner(sender, owner)
    return sender


def not_owner(sender: str, owner: str) -> ActionError:
    """The refusal of a governance action sent by someone other than the market's owner."""
    return ActionError(
        f"{sender} is not the market's owner ({owner})", f"send it from the owner account {owner}", code="not_owner"
    )
