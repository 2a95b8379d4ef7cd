"""JobClient against a real market and a real provider agent: the whole client story, and
its failures (tampered result, unreachable provider, nobody accepting, wrong caller)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpumarket.agentapi.client import HttpTimeouts
from gpumarket.agentapi.errors import ClientError, ProviderRefused, ProviderUnreachable
from gpumarket.chain.connection import advance_time
from gpumarket.chain.models import JobState
from gpumarket.client.choose import JobRequirements, choose_provider
from gpumarket.client.errors import JobNotAccepted, JobNotRunning, ResultMismatch
from gpumarket.client.jobs import JobClient
from gpumarket.signing.eip712 import Outcome

from .conftest import CPU_DEV, DURATION, PRICE, python_spec


def _create(world, client: JobClient, spec, provider: str | None, accept_window: int = 600) -> int:
    return client.create_job(
        spec,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=2 * PRICE,
        max_duration=DURATION,
        provider=provider,
        accept_window=accept_window,
    )


def _run_to_finish(world, client: JobClient, spec) -> int:
    job_id = _create(world, client, spec, world.providers["best"].address)
    world.accept("best", job_id)
    client.wait_running(job_id, timeout_s=5)
    client.send_spec(job_id, spec)
    updates = list(client.follow(job_id, timeout_s=20))
    assert updates[-1].provider_state == "finished", [u.describe() for u in updates]
    return job_id


def test_choose_create_accept_send_follow_fetch_settle_claim(world, caplog):
    caplog.set_level(logging.DEBUG)
    client = world.job_client()
    market = world.deployment.market_at(world.w3)
    offer = choose_provider(market, JobRequirements(CPU_DEV, 1, 2 * PRICE, DURATION))
    assert offer.endpoint == world.endpoint

    spec = python_spec("open('r.txt', 'w').write('hello from the provider')", outputs=["r.txt"])
    job_id = _create(world, client, spec, offer.address)
    assert client.job(job_id).state == JobState.OPEN
    world.accept("best", job_id)
    assert client.wait_running(job_id, timeout_s=5).provider == offer.address
    answer = client.send_spec(job_id, spec)
    assert answer["started"] is True
    updates = list(client.follow(job_id, timeout_s=20))
    assert updates[0].chain_state == JobState.RUNNING
    assert updates[-1].done and updates[-1].provider_state == "finished"

    bundle = client.fetch_result(job_id)
    assert bundle.contents["outputs/r.txt"] == b"hello from the provider"

    # Settled COMPLETED with this result_hash: the on-chain check passes too.
    world.settle(job_id, offer.address, Outcome.COMPLETED, result_hash=bundle.result_hash)
    assert client.fetch_result(job_id).result_hash == bundle.result_hash
    settled = client.update(job_id)
    assert settled.chain_state == JobState.COMPLETED and settled.settled is not None
    assert settled.to_json()["settlement"]["outcome"] == "COMPLETED"
    assert list(client.follow(job_id, until_settled=True, timeout_s=5))[-1].chain_state == JobState.COMPLETED

    refund = market.claimable(market.payment_token, world.client.address)
    assert refund > 0  # one gpu-second of DURATION was paid; the rest comes back
    assert client.claim() == {market.payment_token.address: refund}
    assert client.claim() == {}

    # No key in any log record.
    secret = world.client._ServiceKey__account.key.hex()
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_a_result_that_does_not_match_the_chain_is_refused(world):
    client = world.job_client()
    job_id = _run_to_finish(world, client, python_spec("print('x')"))
    world.settle(job_id, world.providers["best"].address, Outcome.COMPLETED, result_hash=b"\x42" * 32)
    with pytest.raises(ResultMismatch, match="on-chain result_hash"):
        client.fetch_result(job_id)


class _Tampering(BaseHTTPRequestHandler):
    """A provider that reports the honest result_hash but serves altered output."""

    status_doc: bytes = b""
    bundle: bytes = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.status_doc if self.path.endswith("/status") else self.bundle
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tampering() -> Iterator[tuple[type[_Tampering], str]]:
    handler = type("Handler", (_Tampering,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_tampered_result_is_refused(world, tampering):
    handler, url = tampering
    client = world.job_client()
    spec = python_spec("open('r.txt', 'w').write('honest output')", outputs=["r.txt"])
    job_id = _run_to_finish(world, client, spec)
    honest = client.fetch_result(job_id)
    handler.status_doc = json.dumps({"state": "finished", "result_hash": "0x" + honest.result_hash.hex()}).encode()
    document = json.loads(honest.to_bytes())
    document["contents"]["outputs/r.txt"] = "ZXZpbCBvdXRwdXQ="  # "evil output"
    handler.bundle = json.dumps(document).encode()
    with pytest.raises(ResultMismatch, match="does not match its manifest"):
        client.fetch_result(job_id, endpoint=url)
    handler.bundle = b"not json"
    with pytest.raises(ResultMismatch):
        client.fetch_result(job_id, endpoint=url)
    handler.status_doc = b" " * (300 * 1024)  # beyond what a status answer may be: not read
    with pytest.raises(ProviderUnreachable, match="exceeds"):
        client.fetch_result(job_id, endpoint=url)


def test_an_unreachable_provider(world):
    client = JobClient(
        world.market(world.client),
        world.client,
        timeouts=HttpTimeouts(1.0, 1.0),
        poll_interval_s=0.05,
        from_block=world.deployment.block,
    )
    spec = python_spec("print('never runs')")
    job_id = _create(world, client, spec, world.providers["runner_up"].address)
    world.accept("runner_up", job_id)
    with pytest.raises(ProviderUnreachable) as raised:
        client.send_spec(job_id, spec)
    assert "127.0.0.1:9" in str(raised.value) and raised.value.hint
    update = client.update(job_id)
    assert update.provider_state is None and "unreachable" in update.provider_error


def test_wrong_caller_and_wrong_spec(world):
    spec = python_spec("print('mine')")
    client = world.job_client()
    job_id = _create(world, client, spec, world.providers["best"].address)
    with pytest.raises(JobNotRunning):
        client.send_spec(job_id, spec)  # not accepted yet
    world.accept("best", job_id)
    with pytest.raises(ClientError, match="does not hash"):
        client.send_spec(job_id, python_spec("print('another')"))
    intruder = world.job_client(world.other)
    with pytest.raises(ProviderRefused) as raised:
        intruder.send_spec(job_id, spec)
    assert (raised.value.status, raised.value.code) == (403, "wrong_signer")
    client.send_spec(job_id, spec)
    list(client.follow(job_id, timeout_s=20))
    with pytest.raises(ProviderRefused) as refused:
        intruder.fetch_result(job_id)
    assert refused.value.code == "wrong_signer"
    with pytest.raises(JobNotRunning):
        client.cancel(job_id)  # running: only an open job can be cancelled


def test_nobody_accepts_then_expire_or_cancel(world):
    client = world.job_client()
    spec = python_spec("print('lonely')")
    job_id = _create(world, client, spec, None, accept_window=60)
    with pytest.raises(JobNotAccepted) as waited:
        client.wait_running(job_id, timeout_s=0.2)
    assert waited.value.deadline_passed is False
    advance_time(world.w3, 120)
    with pytest.raises(JobNotAccepted) as passed:
        client.wait_running(job_id, timeout_s=5)
    assert passed.value.deadline_passed is True and "expire" in str(passed.value)
    client.expire(job_id)
    assert client.job(job_id).state == JobState.EXPIRED

    cancelled = _create(world, client, spec, None)
    client.cancel(cancelled)
    assert client.job(cancelled).state == JobState.CANCELLED
    with pytest.raises(JobNotRunning):
        client.wait_running(cancelled, timeout_s=1)
    client.claim()
