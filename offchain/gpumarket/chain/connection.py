"""Connections to a node, and the few operations only local chains allow.

    w3 = connect("http://127.0.0.1:8545")   # anvil, or any JSON-RPC node over HTTP(S)
    w3 = connect("embedded")                # an in-process py-evm chain (web3's eth-tester; the demo extra)

The embedded chain funds the twelve accounts of ape's public test mnemonic (the same
accounts anvil funds with `--accounts 12`), so `gpumarket.chain.keys.test_account(i)` pays
gas on either. One embedded chain is shared by every thread of a process: eth-tester is
not thread-safe, so each request runs under one re-entrant lock.

Retries: `call_with_retry` retries what a dropped or restarting node raises (connection
refused, reset, timeouts) with exponential backoff, a bounded number of times, then raises
ChainUnavailable. The HTTP provider itself does not retry, so every retry is visible here.

Local-chain helpers (`advance_time`, `mine`, `fund`) raise NotLocalChain elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from web3 import Web3
from web3.exceptions import ProviderConnectionError, TimeExhausted
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import Wei

from gpumarket.chain.errors import ChainError, ChainUnavailable, NotLocalChain

__all__ = [
    "ANVIL_CHAIN_ID",
    "EMBEDDED",
    "LOCAL_CHAIN_IDS",
    "RetryPolicy",
    "TEST_ACCOUNT_COUNT",
    "TEST_MNEMONIC",
    "advance_time",
    "call_with_retry",
    "connect",
    "fund",
    "is_embedded",
    "is_local_chain",
    "is_transient",
    "latest_timestamp",
    "mine",
    "require_local_chain",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

EMBEDDED = "embedded"
ANVIL_CHAIN_ID = 31337
# Chain ids of local development nodes (anvil, hardhat, ganache); the embedded chain is
# recognised by its provider.
LOCAL_CHAIN_IDS = frozenset({1337, ANVIL_CHAIN_ID})
# ape's (and foundry's) well-known public test mnemonic: these keys hold nothing anywhere.
TEST_MNEMONIC = "test test test test test test test test test test test junk"
TEST_HD_PATH = "m/44'/60'/0'/0"
TEST_ACCOUNT_COUNT = 12


class _LockedTesterProvider(EthereumTesterProvider):
    """eth-tester behind one re-entrant lock (middleware may issue nested requests)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()

    def make_request(self, method: Any, params: Any) -> Any:
        with self._lock:
            return super().make_request(method, params)


def _embedded_provider() -> EthereumTesterProvider:
    try:
        import eth  # noqa: F401  (py-evm, eth-tester's PyEVMBackend: without it eth-tester fails only at first use)
        from eth_tester import EthereumTester, PyEVMBackend
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"the embedded chain needs eth-tester and py-evm ({error.name} is not installed): "
            "pip install 'gpumarket[demo]'",
            name=error.name,
        ) from None

    backend = PyEVMBackend.from_mnemonic(TEST_MNEMONIC, num_accounts=TEST_ACCOUNT_COUNT, hd_path=TEST_HD_PATH)
    return _LockedTesterProvider(EthereumTester(backend))


def connect(url: str, *, timeout: float = 10.0) -> Web3:
    """A Web3 for `url`: "embedded" (a fresh in-process chain) or an http(s):// node URL.

    The embedded chain needs the demo extra; without it this raises ModuleNotFoundError saying so.

    Nothing is sent yet; a node that is down shows up on the first request (wrap it in
    `call_with_retry` to wait for it). `timeout` bounds each HTTP request in seconds.
    """
    if url == EMBEDDED:
        return Web3(_embedded_provider())
    if url.startswith(("http://", "https://")):
        provider = Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        return Web3(provider)
    raise ValueError(f"unsupported node URL {url!r}: expected {EMBEDDED!r} or an http(s):// URL")


def is_embedded(w3: Web3) -> bool:
    return isinstance(w3.provider, EthereumTesterProvider)


def is_local_chain(w3: Web3) -> bool:
    """The embedded chain, or a node whose chain id is a local development id."""
    return is_embedded(w3) or w3.eth.chain_id in LOCAL_CHAIN_IDS


def require_local_chain(w3: Web3, what: str) -> None:
    if not is_local_chain(w3):
        raise NotLocalChain(f"{what} is only allowed on a local chain, not chain id {w3.eth.chain_id}")


# --------------------------------------------------------------------------- retries


def is_transient(error: BaseException) -> bool:
    """Whether `error` is what an unreachable or restarting node raises (worth retrying).

    requests' ConnectionError and Timeout are OSErrors, as are refused and reset sockets.
    """
    return isinstance(error, (OSError, ProviderConnectionError, TimeExhausted))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: delays base, 2*base, ... capped at max_delay, `attempts` tries."""

    attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        return min(self.max_delay, self.base_delay * 2.0**attempt)


def call_with_retry(
    operation: Callable[[], T],
    policy: RetryPolicy = RetryPolicy(),
    *,
    what: str = "chain request",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `operation`, retrying transient node errors per `policy`; other errors propagate.

    Raises ChainUnavailable (from the last error) once every attempt failed.
    """
    for attempt in range(policy.attempts):
        try:
            return operation()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt + 1 == policy.attempts:
                raise ChainUnavailable(f"{what}: node unreachable after {policy.attempts} attempts: {error}") from error
            delay = policy.delay(attempt)
            log.warning(
                "%s failed (%s); retry %d/%d in %.2f s",
                what,
                type(error).__name__,
                attempt + 1,
                policy.attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


# --------------------------------------------------------------------------- local chains


def latest_timestamp(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


def mine(w3: Web3, blocks: int = 1) -> None:
    """Mine `blocks` empty blocks (local chains)."""
    require_local_chain(w3, "mining blocks")
    if blocks < 0:
        raise ValueError("blocks must be >= 0")
    if blocks == 0:
        return
    if is_embedded(w3):
        _rpc(w3, "evm_mine", [blocks])
    else:
        _rpc(w3, "anvil_mine", [hex(blocks)])


def advance_time(w3: Web3, seconds: int) -> int:
    """Mine one block `seconds` after the latest one (local chains); returns its timestamp."""
    require_local_chain(w3, "time travel")
    if seconds < 1:
        raise ValueError("seconds must be >= 1")
    target = latest_timestamp(w3) + seconds
    if is_embedded(w3):
        # eth-tester mines the block itself, one second before the time it is given.
        _rpc(w3, "testing_timeTravel", [target + 1])
    else:
        _rpc(w3, "evm_setNextBlockTimestamp", [target])
        _rpc(w3, "evm_mine", [])
    return latest_timestamp(w3)


def fund(w3: Web3, address: str, wei: int) -> None:
    """Make sure `address` holds at least `wei` of ether (local chains), to pay gas."""
    require_local_chain(w3, "minting ether")
    address = Web3.to_checksum_address(address)
    missing = wei - w3.eth.get_balance(address)
    if missing <= 0:
        return
    if is_embedded(w3):
        # eth-tester has no setBalance; its funded (unlocked) accounts send the difference.
        funder = w3.eth.accounts[-1]
        sent = w3.eth.send_transaction({"from": funder, "to": address, "value": Wei(missing)})
        w3.eth.wait_for_transaction_receipt(sent)
    else:
        _rpc(w3, "anvil_setBalance", [address, hex(wei)])


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """A raw JSON-RPC request (node-specific methods web3 has no wrapper for)."""
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in response:
        raise ChainError(f"{method} failed: {response['error']}")
    return response.get("result")
