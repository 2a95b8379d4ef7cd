"""Typed errors of the chain access layer (web3-based; see connection, market, follower).

Every error a service may need to tell apart has its own class; none of them ever
carries a key, a passphrase or a signed transaction's raw bytes.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "ChainMismatch",
    "ChainUnavailable",
    "ContractRevert",
    "NotLocalChain",
    "TransactionTimeout",
]


class ChainError(RuntimeError):
    """Base class of the chain access layer's errors."""


class ContractRevert(ChainError):
    """The contract refused a call or transaction; `reason` is its revert string
    (e.g. "escrow: job not running"), empty when it reverted without one."""

    def __init__(self, reason: str, *, function: str | None = None, tx_hash: str | None = None) -> None:
        self.reason = reason
        self.function = function
        self.tx_hash = tx_hash
        where = f"{function}: " if function else ""
        mined = f" (mined in {tx_hash})" if tx_hash else ""
        super().__init__(f"{where}reverted: {reason or '<no reason>'}{mined}")


class TransactionTimeout(ChainError):
    """A sent transaction had no receipt within the timeout; it may still be mined."""

    def __init__(self, tx_hash: str, timeout: float) -> None:
        self.tx_hash = tx_hash
        self.timeout = timeout
        super().__init__(f"no receipt for {tx_hash} within {timeout:g} s")


class ChainUnavailable(ChainError):
    """The node could not be reached within the retry budget."""


class ChainMismatch(ChainError):
    """The node serves another chain than the one a stored cursor or deployment was made on
    (a different chain id, or a different block at a height already processed)."""


class NotLocalChain(ChainError):
    """A local-only operation (test keys, time travel, minting ether) on a non-local chain."""
