"""gpumarket.chain.connection and transactions: node URLs, bounded retries, local-chain
helpers, a shared embedded chain under threads, nonces, receipt timeouts and mined reverts."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.connection import (
    EMBEDDED,
    RetryPolicy,
    advance_time,
    call_with_retry,
    connect,
    fund,
    is_local_chain,
    latest_timestamp,
    mine,
)
from gpumarket.chain.errors import ChainUnavailable, ContractRevert, NotLocalChain, TransactionTimeout
from gpumarket.chain.events import JobCreated
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.transactions import Transactor, TxSettings, revert_reason

from .conftest import CPU_DEV, HOUR, PRICE, SPEC_HASH

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connect_rejects_unknown_urls():
    with pytest.raises(ValueError, match="unsupported node URL"):
        connect("ws://127.0.0.1:8545")


def test_retry_policy():
    policy = RetryPolicy(attempts=5, base_delay=0.1, max_delay=0.3)
    assert [policy.delay(i) for i in range(4)] == [0.1, 0.2, 0.3, 0.3]
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_call_with_retry_retries_transient_errors_only():
    failures = [requests.ConnectionError("down"), ConnectionResetError("reset")]
    slept: list[float] = []

    def flaky() -> int:
        if failures:
            raise failures.pop(0)
        return 7

    assert call_with_retry(flaky, FAST, sleep=slept.append) == 7
    assert slept == [0.01, 0.02]
    with pytest.raises(KeyError):
        call_with_retry(lambda: {}["x"], FAST)


def test_an_unreachable_node_raises_chain_unavailable_in_bounded_time():
    w3 = connect(f"http://127.0.0.1:{_closed_port()}", timeout=1)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable, match="eth_blockNumber: node unreachable after 3 attempts"):
        call_with_retry(lambda: w3.eth.block_number, FAST, what="eth_blockNumber")
    assert time.monotonic() - started < 5


def test_local_chain_helpers_on_the_embedded_chain():
    w3 = connect(EMBEDDED)
    assert is_local_chain(w3)
    start = w3.eth.block_number
    mine(w3, 3)
    assert w3.eth.block_number == start + 3
    before = latest_timestamp(w3)
    assert advance_time(w3, HOUR) == before + HOUR
    fresh = "0x000000000000000000000000000000000000dEaD"
    fund(w3, fresh, 10**18)
    fund(w3, fresh, 10**17)  # already holds more: nothing sent
    assert w3.eth.get_balance(fresh) == 10**18
    for index in range(12):
        assert w3.eth.get_balance(test_account(index).address) > 10**21


def test_local_chain_helpers_on_anvil(anvil):
    w3 = connect(anvil.url)
    assert is_local_chain(w3) and w3.eth.chain_id == 31337
    start = w3.eth.block_number
    mine(w3, 2)
    assert w3.eth.block_number == start + 2
    before = latest_timestamp(w3)
    assert advance_time(w3, 600) == before + 600
    fund(w3, "0x000000000000000000000000000000000000dEaD", 5)
    assert w3.eth.get_balance("0x000000000000000000000000000000000000dEaD") == 5


def test_local_chain_helpers_refuse_a_public_chain(anvil_binary, tmp_path):
    with AnvilNode(anvil_binary, chain_id=1, log_path=tmp_path / "anvil.log") as node:
        w3 = connect(node.url)
        assert not is_local_chain(w3)
        for action in (lambda: mine(w3), lambda: advance_time(w3, 1), lambda: fund(w3, test_account(0).address, 1)):
            with pytest.raises(NotLocalChain):
                action()


def _send_many(w3, keys: list[ServiceKey], per_thread: int) -> list[BaseException]:
    errors: list[BaseException] = []
    sink = "0x000000000000000000000000000000000000bEEF"

    def work(key: ServiceKey) -> None:
        sender = Transactor.for_signer(w3, key)
        try:
            for _ in range(per_thread):
                sender.send(to=sink, data=b"", label="transfer", value=1)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def _check_threads_share_a_chain_and_a_key(w3) -> None:
    shared, own = test_account(8), test_account(9)
    nonce_before = {key.address: w3.eth.get_transaction_count(key.address) for key in (shared, own)}
    # Three threads send from one key, one from another: no nonce is used twice.
    errors = _send_many(w3, [shared, shared, shared, own], per_thread=4)
    assert errors == []
    assert w3.eth.get_transaction_count(shared.address) == nonce_before[shared.address] + 12
    assert w3.eth.get_transaction_count(own.address) == nonce_before[own.address] + 4
    assert Transactor.for_signer(w3, shared) is Transactor.for_signer(w3, shared)


def test_threads_share_the_embedded_chain_and_a_key():
    _check_threads_share_a_chain_and_a_key(connect(EMBEDDED))


def test_threads_share_anvil_and_a_key(anvil):
    _check_threads_share_a_chain_and_a_key(connect(anvil.url))


def test_receipt_timeout_and_mined_revert(anvil_kit):
    w3 = anvil_kit.w3
    client_key = anvil_kit.roles.client
    anvil_kit.fund(client_key)
    client = anvil_kit.market(client_key)
    job_id = client.create_job(CPU_DEV, 1, PRICE, HOUR, SPEC_HASH, anvil_kit.now() + HOUR).event(JobCreated).job_id
    sender = Transactor(w3, client_key, TxSettings(receipt_timeout=0.5, poll_interval=0.05))
    cancel = client.contract.encode_abi("cancel_job", args=[job_id])

    w3.provider.make_request("evm_setAutomine", [False])
    try:
        with pytest.raises(TransactionTimeout) as timed_out:
            sender.send(to=client.address, data=cancel, label="cancel_job", gas=200_000)
        # Sent with a fixed gas (no estimate), a second cancel of the same job reverts when mined.
        outcome: dict[str, BaseException] = {}

        def second() -> None:
            try:
                Transactor(w3, client_key, TxSettings(receipt_timeout=10)).send(
                    to=client.address, data=cancel, label="cancel_job", gas=200_000
                )
            except BaseException as error:  # inspected below
                outcome["error"] = error

        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 5
        while (
            w3.eth.get_transaction_count(client_key.address, "pending")
            < w3.eth.get_transaction_count(client_key.address) + 2
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        mine(w3, 1)
        thread.join(timeout=15)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert w3.eth.get_transaction_receipt(timed_out.value.tx_hash)["status"] == 1
    error = outcome["error"]
    assert isinstance(error, ContractRevert)
    assert error.reason == "escrow: job not open" and error.tx_hash and error.function == "cancel_job"
    assert w3.eth.get_transaction_receipt(error.tx_hash)["status"] == 0


def test_revert_reason_of_non_reverts_is_none():
    assert revert_reason(requests.ConnectionError("down")) is None
    assert revert_reason(ValueError("execution reverted: no")) is None
