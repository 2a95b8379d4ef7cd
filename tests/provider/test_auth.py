"""gpumarket.agentapi.auth: signed client requests, real EIP-191 signatures, nonces in real SQLite."""

from __future__ import annotations

import base64
import json

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from gpumarket.agentapi.auth import (
    AuthError,
    AuthScope,
    RequestVerifier,
    SignedRequest,
    request_text,
    sign_request,
)

from .support import CHAIN_ID, MARKET, OTHER_MARKET

NOW = 1_767_225_600
SPEC_HASH = bytes.fromhex("11" * 32)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(store, clock) -> RequestVerifier:
    return RequestVerifier(AuthScope(CHAIN_ID, MARKET), store, max_age_s=300, max_skew_s=60, clock=clock)


def signed(signer, **fields) -> SignedRequest:
    values = {
        "action": "put-spec",
        "chain_id": CHAIN_ID,
        "market": MARKET,
        "job_id": 7,
        "spec_hash": SPEC_HASH,
        "issued_at": NOW,
    }
    values.update(fields)
    return sign_request(signer, **values)


def refusal(call) -> AuthError:
    with pytest.raises(AuthError) as caught:
        call()
    return caught.value


def test_the_signed_text_is_exact():
    text = request_text(
        action="put-spec",
        chain_id=31337,
        market=MARKET.lower(),
        job_id=7,
        spec_hash=SPEC_HASH,
        issued_at=NOW,
        nonce=bytes(range(16)),
    )
    assert text == (
        "gpumarket provider request\n"
        "action: put-spec\n"
        "chain_id: 31337\n"
        f"market: {MARKET}\n"
        "job_id: 7\n"
        f"spec_hash: 0x{'11' * 32}\n"
        f"issued_at: {NOW}\n"
        "nonce: 0x000102030405060708090a0b0c0d0e0f"
    )


def test_a_good_request_verifies_and_names_its_signer(verifier, client_account):
    request = signed(client_account)
    assert request.signer() == client_account.address
    parsed = SignedRequest.from_header(request.to_header())
    assert parsed == request
    assert verifier.verify(parsed, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH) == (
        client_account.address
    )
    # Independently: eth_account recovers the same address from the same text.
    assert (
        Account.recover_message(encode_defunct(text=request.text()), signature=request.signature)
        == client_account.address
    )


def test_a_get_result_request_names_no_spec(verifier, client_account):
    request = signed(client_account, action="get-result", spec_hash=None)
    assert "spec_hash: none" in request.text()
    assert (
        verifier.verify(request, action="get-result", job_id=7, client=client_account.address) == client_account.address
    )


def test_a_callable_signer_works(verifier, client_account):
    request = signed(lambda message: client_account.sign_message(message).signature)
    assert request.signer() == client_account.address


def test_wrong_signer_is_403(verifier, client_account, other_client):
    request = signed(other_client)
    error = refusal(
        lambda: verifier.verify(
            request, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH
        )
    )
    assert (error.status, error.code) == (403, "wrong_signer")
    assert other_client.address in error.detail and client_account.address in error.detail


def test_a_changed_field_breaks_the_signature(verifier, client_account):
    request = signed(client_account)
    tampered = request.model_copy(update={"job_id": 8})
    error = refusal(
        lambda: verifier.verify(
            tampered, action="put-spec", job_id=8, client=client_account.address, spec_hash=SPEC_HASH
        )
    )
    assert (error.status, error.code) == (403, "wrong_signer")


@pytest.mark.parametrize(
    ("issued_at", "fragment"),
    [(NOW - 301, "ago"), (NOW - 10_000, "ago"), (NOW + 61, "future")],
)
def test_expired_and_future_requests_are_401(verifier, client_account, issued_at, fragment):
    request = signed(client_account, issued_at=issued_at)
    error = refusal(
        lambda: verifier.verify(
            request, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH
        )
    )
    assert (error.status, error.code) == (401, "expired") and fragment in error.detail


def test_edges_of_the_window_are_accepted(verifier, client_account):
    for issued_at in (NOW - 300, NOW + 60):
        request = signed(client_account, issued_at=issued_at)
        verifier.verify(request, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH)


def test_a_replayed_nonce_is_409_and_other_checks_do_not_burn_it(verifier, client_account, store):
    request = signed(client_account)
    verify = lambda: verifier.verify(  # noqa: E731
        request, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH
    )
    verify()
    error = refusal(verify)
    assert (error.status, error.code) == (409, "replayed")
    # A request refused for another reason (wrong job) leaves its nonce unused.
    fresh = signed(client_account)
    refusal(
        lambda: verifier.verify(fresh, action="put-spec", job_id=9, client=client_account.address, spec_hash=SPEC_HASH)
    )
    verifier.verify(fresh, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH)
    # The same nonce from another signer is that signer's own.
    nonce = bytes(16)
    store.use_nonce("0x" + "aa" * 20, nonce, NOW, 0)
    assert store.use_nonce("0x" + "bb" * 20, nonce, NOW, 0)


def test_replay_is_refused_across_a_restart(tmp_path, client_account, clock):
    from gpumarket.provider.store import Store

    request = signed(client_account)
    first = Store(tmp_path / "a.sqlite")
    RequestVerifier(AuthScope(CHAIN_ID, MARKET), first, clock=clock).verify(
        request, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH
    )
    first.close()
    again = Store(tmp_path / "a.sqlite")
    error = refusal(
        lambda: RequestVerifier(AuthScope(CHAIN_ID, MARKET), again, clock=clock).verify(
            request, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH
        )
    )
    again.close()
    assert error.code == "replayed"


def test_expired_nonces_are_forgotten(store):
    signer = "0x" + "aa" * 20
    assert store.use_nonce(signer, b"\x01" * 16, 100, 0)
    assert not store.use_nonce(signer, b"\x01" * 16, 100, 0)
    assert store.use_nonce(signer, b"\x02" * 16, 500, 101)  # drops the first: issued before 101
    assert store.use_nonce(signer, b"\x01" * 16, 500, 101)


@pytest.mark.parametrize(
    ("fields", "check", "fragment"),
    [
        ({"job_id": 8}, {}, "signed for job 8"),
        ({"chain_id": 1}, {}, "signed for chain 1"),
        ({"market": OTHER_MARKET}, {}, f"signed for market {OTHER_MARKET}"),
        ({"action": "get-result", "spec_hash": None}, {}, "signed for action 'get-result'"),
        ({"spec_hash": bytes(32)}, {}, "signed for spec_hash 0x" + "00" * 32),
        ({}, {"spec_hash": bytes(32)}, "the request carries 0x" + "00" * 32),
    ],
)
def test_a_request_signed_for_something_else_is_403(verifier, client_account, fields, check, fragment):
    request = signed(client_account, **fields)
    arguments = {"action": "put-spec", "job_id": 7, "client": client_account.address, "spec_hash": SPEC_HASH} | check
    error = refusal(lambda: verifier.verify(request, **arguments))
    assert (error.status, error.code) == (403, "wrong_scope")
    assert fragment in error.detail


def _token(data: object) -> str:
    return "GpuMarket " + base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_auth"),
        ("", "missing_auth"),
        ("Bearer abc", "malformed_auth"),
        ("GpuMarket", "malformed_auth"),
        ("GpuMarket !!!not-base64!!!", "malformed_auth"),
        ("GpuMarket " + base64.urlsafe_b64encode(b"not json").decode(), "malformed_auth"),
        (_token([1, 2]), "malformed_auth"),
        (_token({"action": "put-spec"}), "malformed_auth"),
        ("GpuMarket " + "A" * 3000, "malformed_auth"),
    ],
)
def test_malformed_headers_are_401(header, code):
    error = refusal(lambda: SignedRequest.from_header(header))
    assert (error.status, error.code) == (401, code)


def test_bad_fields_in_the_token_are_401(client_account):
    good = json.loads(base64.urlsafe_b64decode(signed(client_account).to_header().split(" ", 1)[1]))
    for field, value in [
        ("signature", "0x" + "00" * 64),
        ("signature", "0x12"),
        ("nonce", "0x" + "00" * 15),
        ("market", MARKET.lower()),
        ("job_id", "7"),
        ("action", "delete-everything"),
        ("issued_at", 1.5),
        ("extra", 1),
    ]:
        token = _token(good | {field: value})
        error = refusal(lambda token=token: SignedRequest.from_header(token))
        assert (error.status, error.code, field in error.detail) == (401, "malformed_auth", True), (field, error.detail)


def test_an_unrecoverable_signature_is_401(verifier, client_account):
    request = signed(client_account).model_copy(update={"signature": b"\x00" * 65})
    error = refusal(
        lambda: verifier.verify(
            request, action="put-spec", job_id=7, client=client_account.address, spec_hash=SPEC_HASH
        )
    )
    assert (error.status, error.code) == (401, "bad_signature")


def test_sign_request_checks_the_action_shape(client_account):
    with pytest.raises(ValueError, match="must name the spec_hash"):
        sign_request(client_account, action="put-spec", chain_id=CHAIN_ID, market=MARKET, job_id=1)
    with pytest.raises(ValueError, match="names no spec_hash"):
        sign_request(
            client_account, action="get-result", chain_id=CHAIN_ID, market=MARKET, job_id=1, spec_hash=SPEC_HASH
        )


def test_fresh_requests_get_fresh_nonces(client_account):
    first, second = signed(client_account), signed(client_account)
    assert first.nonce != second.nonce and len(first.nonce) == 16


def test_no_key_in_the_request_or_its_errors(verifier, client_account, other_client):
    key = client_account.key.hex().removeprefix("0x")
    request = signed(client_account)
    assert key not in request.to_header() and key not in repr(request) and key not in request.text()
    error = refusal(
        lambda: verifier.verify(request, action="put-spec", job_id=7, client=other_client.address, spec_hash=SPEC_HASH)
    )
    assert key not in str(error) and key not in json.dumps(error.to_json())
