"""Sending transactions signed by a local key: nonces, gas, fees, receipts, revert reasons.

    sender = Transactor.for_signer(w3, key)          # one per (chain connection, account)
    receipt = sender.send(to=market, data=calldata, label="accept_job")

`send` estimates gas (a revert there raises ContractRevert with the contract's reason and
nothing is sent), signs with the local key, sends the raw transaction, and waits for the
receipt for at most `receipt_timeout` seconds (TransactionTimeout; the transaction may
still be mined later). A mined transaction that reverted raises ContractRevert with the
reason found by replaying it on the state around its block.

Nonces: a Transactor signs and sends under a lock, taking the node's pending transaction
count as the nonce, so threads sharing a key never reuse one; `for_signer` returns the
same Transactor for the same connection and account. A "nonce too low" answer (another
process sent from the account meanwhile) takes the next count and retries (bounded).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from gpumarket.chain.connection import is_transient
from gpumarket.chain.errors import ChainError, ContractRevert, TransactionTimeout

__all__ = [
    "DEFAULT_PRIORITY_FEE_WEI",
    "Signer",
    "TxSettings",
    "Transactor",
    "revert_reason",
]

log = logging.getLogger(__name__)

DEFAULT_PRIORITY_FEE_WEI = 10**9  # 1 gwei
_NONCE_RETRIES = 3
_REGISTRY_ATTRIBUTE = "_gpumarket_transactors"
_REVERT_PREFIX = "execution reverted"


class Signer(Protocol):
    """A local key: gpumarket.chain.keys.ServiceKey or an eth_account LocalAccount."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, transaction: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class TxSettings:
    """receipt_timeout: seconds to wait for a receipt; gas_margin: added to the estimate
    (0.2 = 20%); priority_fee_wei: the tip (default 1 gwei)."""

    receipt_timeout: float = 60.0
    poll_interval: float = 0.05
    gas_margin: float = 0.2
    priority_fee_wei: int = DEFAULT_PRIORITY_FEE_WEI


def revert_reason(error: BaseException) -> str | None:
    """The revert string of an execution error (empty if it reverted without one), or
    None when `error` is not a revert (a dropped connection, a bad request ...)."""
    message: str | None = None
    if isinstance(error, ContractLogicError):
        message = str(error.message or "")
    elif type(error).__name__ == "TransactionFailed" and type(error).__module__.startswith("eth_tester"):
        # The embedded chain raises eth-tester's own exception.
        message = str(error.args[0]) if error.args else ""
    elif isinstance(error, Web3RPCError) and _REVERT_PREFIX in str(error.message or ""):
        message = str(error.message)
    if message is None:
        return None
    message = message.strip()
    if message.startswith(_REVERT_PREFIX):
        message = message[len(_REVERT_PREFIX) :].lstrip(":").strip()
    return message


def _is_nonce_conflict(error: BaseException) -> bool:
    """The node refused a nonce as used (anvil/geth: "nonce too low", "already known";
    eth-tester: a ValidationError "Invalid transaction nonce")."""
    text = str(getattr(error, "message", None) or error).lower()
    return any(marker in text for marker in ("nonce too low", "already known", "invalid transaction nonce"))


class Transactor:
    """Sends transactions from one local account on one connection (thread-safe)."""

    _registry_lock = threading.Lock()

    def __init__(self, w3: Web3, signer: Signer, settings: TxSettings = TxSettings()) -> None:
        self.w3 = w3
        self.signer = signer
        self.address: str = Web3.to_checksum_address(signer.address)
        self.settings = settings
        self._lock = threading.Lock()
        self._chain_id: int | None = None

    @classmethod
    def for_signer(cls, w3: Web3, signer: Signer, settings: TxSettings | None = None) -> Transactor:
        """The shared Transactor of `signer`'s account on `w3` (created on first use)."""
        address = Web3.to_checksum_address(signer.address)
        with cls._registry_lock:
            # Kept on the connection itself, so the Transactors live and die with it.
            by_address: dict[str, Transactor] = w3.__dict__.setdefault(_REGISTRY_ATTRIBUTE, {})
            existing = by_address.get(address)
            if existing is None:
                existing = by_address[address] = cls(w3, signer, settings or TxSettings())
            return existing

    def __repr__(self) -> str:
        return f"Transactor(address={self.address})"

    # ------------------------------------------------------------------ sending

    def send(self, *, to: str | None, data: str | bytes, label: str, value: int = 0, gas: int | None = None) -> Any:
        """Send one transaction (to=None deploys `data`) and return its successful receipt.

        `gas` skips the estimate (and its early revert check). Raises ContractRevert
        (estimate or mined revert), TransactionTimeout, or the node's error. `label` names
        the call in errors and logs.
        """
        hex_data = data if isinstance(data, str) else Web3.to_hex(data)
        call: dict[str, Any] = {"from": self.address, "data": hex_data, "value": value}
        if to is not None:
            call["to"] = Web3.to_checksum_address(to)
        with self._lock:
            gas_limit = self._estimate(call, label) if gas is None else gas
            tx_hash = self._sign_and_send({**call, "gas": gas_limit, "chainId": self._chain(), **self._fees()}, label)
        receipt = self.wait_for_receipt(tx_hash)
        if receipt["status"] != 1:
            reason = self._replay_reason(call, int(receipt["blockNumber"]))
            raise ContractRevert(reason, function=label, tx_hash=tx_hash)
        log.debug(
            "%s from %s mined in block %s (gas %s)", label, self.address, receipt["blockNumber"], receipt["gasUsed"]
        )
        return receipt

    def _chain(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def _estimate(self, call: dict[str, Any], label: str) -> int:
        try:
            estimate = int(self.w3.eth.estimate_gas(call))  # type: ignore[arg-type]
        except Exception as error:
            reason = revert_reason(error)
            if reason is None:
                raise
            raise ContractRevert(reason, function=label) from None
        limit = int(self.w3.eth.get_block("latest")["gasLimit"])
        return min(limit, int(estimate * (1 + self.settings.gas_margin)) + 10_000)

    def _fees(self) -> dict[str, int]:
        block = self.w3.eth.get_block("latest")
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            return {"gasPrice": int(self.w3.eth.gas_price)}
        tip = self.settings.priority_fee_wei
        # Twice the base fee: still valid after several blocks of rising base fee.
        return {"maxFeePerGas": 2 * int(base_fee) + tip, "maxPriorityFeePerGas": tip}

    def _sign_and_send(self, transaction: dict[str, Any], label: str) -> str:
        for attempt in range(_NONCE_RETRIES):
            # Under self._lock: the node's pending count already includes this account's
            # earlier transactions, since each send returns only once the node took it.
            nonce = int(self.w3.eth.get_transaction_count(self.address, "pending"))  # type: ignore[arg-type]
            signed = self.signer.sign_transaction({**transaction, "nonce": nonce})
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as error:
                if _is_nonce_conflict(error) and attempt + 1 < _NONCE_RETRIES:
                    # Another process sent from this account: take the next free nonce.
                    log.warning("%s: nonce %d taken (%s); retrying", label, nonce, type(error).__name__)
                    continue
                reason = revert_reason(error)
                if reason is None:
                    raise
                # The embedded chain executes on send, so a revert can surface here.
                raise ContractRevert(reason, function=label) from None
            return "0x" + bytes(tx_hash).hex()
        raise ChainError(f"{label}: no nonce accepted after {_NONCE_RETRIES} attempts")

    # ------------------------------------------------------------------ receipts

    def wait_for_receipt(self, tx_hash: str, timeout: float | None = None) -> Any:
        """Poll for `tx_hash`'s receipt; transient node errors are retried until the deadline."""
        limit = self.settings.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                pass
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("receipt of %s: node error %s; still waiting", tx_hash, type(error).__name__)
            if time.monotonic() >= deadline:
                raise TransactionTimeout(tx_hash, limit)
            time.sleep(self.settings.poll_interval)

    def _replay_reason(self, call: dict[str, Any], block_number: int) -> str:
        """Why a mined transaction reverted: the same call replayed after its block (which
        holds the earlier transactions of the block that made it fail), else before it."""
        for block in (block_number, max(0, block_number - 1)):
            try:
                self.w3.eth.call(call, block_identifier=block)  # type: ignore[arg-type]
            except Exception as error:
                reason = revert_reason(error)
                if reason is not None:
                    return reason
        return ""
