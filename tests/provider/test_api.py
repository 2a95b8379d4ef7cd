"""The provider agent over real HTTP: spec -> run -> result, and every hostile input refused with a
precise 4xx while the server keeps serving. The chain is the MemoryJobSource double."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from eth_utils import keccak

from gpumarket.agentapi.auth import sign_request
from gpumarket.agentapi.result import ResultBundle
from gpumarket.agentapi.spec import MAX_SPEC_BYTES
from gpumarket.provider.jobsource import JobState

from .support import CHAIN_ID, MARKET, python_spec

JOB = 7


def spec_auth(signer, spec, job_id=JOB, **fields):
    values = {"action": "put-spec", "chain_id": CHAIN_ID, "market": MARKET, "job_id": job_id, "spec_hash": spec.hash()}
    values.update(fields)
    return {"Authorization": sign_request(signer, **values).to_header()}


def result_auth(signer, job_id=JOB, **fields):
    values = {"action": "get-result", "chain_id": CHAIN_ID, "market": MARKET, "job_id": job_id}
    values.update(fields)
    return {"Authorization": sign_request(signer, **values).to_header()}


def put_spec(served, signer, spec, job_id=JOB, body=None, **fields):
    headers = spec_auth(signer, spec, job_id, **fields)
    return served.http.request(
        "PUT", f"/jobs/{job_id}/spec", body if body is not None else spec.canonical_bytes(), headers
    )


def wait_finished(served, job_id=JOB, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = served.http.request("GET", f"/jobs/{job_id}/status").json()
        if status["state"] in ("finished", "lost"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def expect(response, status, error):
    assert (response.status, response.error) == (status, error), response.body
    assert set(response.json()) == {"error", "detail"} and response.json()["detail"]
    return response.json()["detail"]


@pytest.fixture
def job_spec():
    return python_spec("open('answer.txt', 'w').write('42'); print('computed')", outputs=["answer.txt"])


@pytest.fixture
def on_chain(served, client_account, provider_account, job_spec):
    return served.jobs.put(
        JOB, client=client_account.address, provider=provider_account.address, spec_hash=job_spec.hash()
    )


def test_spec_run_result_end_to_end(served, on_chain, client_account, job_spec, caplog):
    caplog.set_level(logging.DEBUG)
    health = served.http.request("GET", "/health").json()
    assert health["status"] == "ok" and health["gpu_class"] == "cpu-dev" and health["chain_id"] == CHAIN_ID

    response = put_spec(served, client_account, job_spec)
    assert response.status == 202, response.body
    assert response.json()["started"] is True and response.json()["job"]["state"] in ("running", "finished")

    status = wait_finished(served)
    assert status["state"] == "finished" and status["exit_code"] == 0 and status["timed_out"] is False

    response = served.http.request("GET", f"/jobs/{JOB}/result", headers=result_auth(client_account))
    assert response.status == 200, response.body
    bundle = ResultBundle.parse(response.body)
    result_hash = bytes.fromhex(status["result_hash"][2:])
    assert bundle.verify(result_hash) == result_hash
    assert bundle.contents == {"stdout": b"computed\n", "stderr": b"", "outputs/answer.txt": b"42"}
    assert bundle.manifest.job_id == JOB

    usage = served.http.request("GET", f"/jobs/{JOB}/usage")
    assert usage.status == 200 and "0x" + keccak(usage.body).hex() == status["evidence_hash"]

    # A retry with a fresh signature answers the job's state and starts nothing.
    again = put_spec(served, client_account, job_spec)
    assert again.status == 200 and again.json()["started"] is False and again.json()["job"]["state"] == "finished"

    # No key ever reaches a log or a response.
    key = client_account.key.hex().removeprefix("0x")
    assert key not in caplog.text
    assert all(key.encode() not in body for body in served.http.log)


def test_hostile_spec_requests(served, on_chain, client_account, other_client, provider_account, job_spec):
    http = served.http
    path = f"/jobs/{JOB}/spec"
    good_headers = spec_auth(client_account, job_spec)

    # Transport: size, length, JSON.
    assert (
        b"413"
        in http.raw(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_SPEC_BYTES + 1}\r\n\r\n".encode() + b"{" * 100
        ).split(b"\r\n", 1)[0]
    )
    assert http.healthy()
    detail = expect(http.request("PUT", path, b"{" * (MAX_SPEC_BYTES + 1), good_headers), 413, "body_too_large")
    assert str(MAX_SPEC_BYTES) in detail
    assert http.healthy()
    first_line = http.raw(f"PUT {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()).split(b"\r\n", 1)[0]
    assert b"411" in first_line and http.healthy()
    chunked = http.raw(
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode()
    )
    assert b"411" in chunked.split(b"\r\n", 1)[0] and http.healthy()
    bad_length = http.raw(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".encode())
    assert b"400" in bad_length.split(b"\r\n", 1)[0] and http.healthy()
    truncated = http.raw(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode(), half_close=True)
    assert b"400" in truncated.split(b"\r\n", 1)[0] and b"truncated_body" in truncated and http.healthy()
    expect(http.request("PUT", path, b'{"version": 1, "command": [', good_headers), 400, "malformed_json")
    expect(http.request("PUT", path, b'{"version": 1, "command": "ls"}', good_headers), 422, "invalid_spec")
    assert http.healthy()

    # Authentication.
    expect(http.request("PUT", path, job_spec.canonical_bytes()), 401, "missing_auth")
    expect(
        http.request("PUT", path, job_spec.canonical_bytes(), {"Authorization": "GpuMarket garbage"}),
        401,
        "malformed_auth",
    )
    forged = sign_request(
        client_account, action="put-spec", chain_id=CHAIN_ID, market=MARKET, job_id=JOB, spec_hash=job_spec.hash()
    )
    forged = forged.model_copy(update={"signature": b"\x00" * 65})
    expect(
        http.request("PUT", path, job_spec.canonical_bytes(), {"Authorization": forged.to_header()}),
        401,
        "bad_signature",
    )
    stale = put_spec(served, client_account, job_spec, issued_at=int(time.time()) - 3600)
    expect(stale, 401, "expired")
    assert http.healthy()

    # Authorisation: another client, another job, chain or market, another spec.
    detail = expect(put_spec(served, other_client, job_spec), 403, "wrong_signer")
    assert other_client.address in detail
    expect(put_spec(served, client_account, job_spec, chain_id=1), 403, "wrong_scope")
    expect(
        put_spec(served, client_account, job_spec, market="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
        403,
        "wrong_scope",
    )
    other_spec = python_spec("print('something else')")
    signed_for_other = spec_auth(client_account, other_spec)
    expect(http.request("PUT", path, job_spec.canonical_bytes(), signed_for_other), 403, "wrong_scope")
    assert http.healthy()

    # The chain: a spec whose hash is not the on-chain one, jobs not running here.
    detail = expect(put_spec(served, client_account, other_spec), 409, "spec_hash_mismatch")
    assert job_spec.hash().hex() in detail and other_spec.hash().hex() in detail
    expect(put_spec(served, client_account, job_spec, job_id=99), 404, "unknown_job")
    served.jobs.put(
        8,
        client=client_account.address,
        provider=provider_account.address,
        spec_hash=job_spec.hash(),
        state=JobState.OPEN,
    )
    expect(put_spec(served, client_account, job_spec, job_id=8), 409, "job_not_running")
    served.jobs.put(9, client=client_account.address, provider=other_client.address, spec_hash=job_spec.hash())
    expect(put_spec(served, client_account, job_spec, job_id=9), 409, "not_this_provider")
    served.jobs.failing = True
    expect(put_spec(served, client_account, job_spec), 503, "chain_unavailable")
    served.jobs.failing = False
    assert http.healthy()

    # Nothing above started or stored a job; the good request still works, once.
    assert served.store.get(JOB) is None
    response = http.request("PUT", path, job_spec.canonical_bytes(), good_headers)
    assert response.status == 202, response.body
    expect(http.request("PUT", path, job_spec.canonical_bytes(), good_headers), 409, "replayed")
    wait_finished(served)
    assert http.healthy()


def test_hostile_result_requests(served, on_chain, client_account, other_client, job_spec):
    http = served.http
    path = f"/jobs/{JOB}/result"
    expect(http.request("GET", path, headers=result_auth(client_account)), 404, "unknown_job")
    assert put_spec(served, client_account, job_spec).status == 202
    expect(http.request("GET", path), 401, "missing_auth")
    expect(http.request("GET", path, headers=result_auth(other_client)), 403, "wrong_signer")
    expect(http.request("GET", path, headers=result_auth(client_account, job_id=JOB + 1)), 403, "wrong_scope")
    wrong_action = spec_auth(client_account, job_spec)
    expect(http.request("GET", path, headers=wrong_action), 403, "wrong_scope")
    wait_finished(served)
    headers = result_auth(client_account)
    assert http.request("GET", path, headers=headers).status == 200
    expect(http.request("GET", path, headers=headers), 409, "replayed")
    assert http.request("GET", path, headers=result_auth(client_account)).status == 200
    assert http.healthy()


def test_a_result_before_the_end_is_409(served, client_account, provider_account):
    slow = python_spec("import time; time.sleep(30)")
    served.jobs.put(JOB, client=client_account.address, provider=provider_account.address, spec_hash=slow.hash())
    assert put_spec(served, client_account, slow).status == 202
    detail = expect(
        served.http.request("GET", f"/jobs/{JOB}/result", headers=result_auth(client_account)), 409, "not_finished"
    )
    assert "running" in detail
    expect(served.http.request("GET", f"/jobs/{JOB}/usage"), 409, "not_finished")
    assert served.http.request("GET", f"/jobs/{JOB}/status").json()["state"] == "running"


def test_routes_and_methods(served):
    http = served.http
    expect(http.request("GET", "/nothing"), 404, "not_found")
    expect(http.request("GET", "/jobs/abc/status"), 404, "not_found")
    expect(http.request("GET", "/jobs/1/status"), 404, "unknown_job")
    expect(http.request("GET", f"/jobs/{2**256}/status"), 404, "unknown_job")
    expect(http.request("GET", "/jobs/1/usage"), 404, "unknown_job")
    response = http.request("DELETE", "/jobs/1/spec")
    expect(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "PUT"
    expect(http.request("GET", "/challenge"), 405, "method_not_allowed")
    expect(http.request("POST", "/health", b"{}"), 405, "method_not_allowed")
    garbage = http.raw(b"\x16\x03\x01\x00\xa5 nonsense\r\n\r\n")
    head, _, body = garbage.partition(b"\r\n\r\n")
    assert b"400" in head.split(b"\r\n", 1)[0] and json.loads(body)["error"] == "bad_request"
    expect(http.request("BREW", "/health"), 405, "method_not_allowed")  # any token is a method to h11
    huge_header = http.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert b"431" in huge_header.split(b"\r\n", 1)[0]
    assert http.healthy()


def test_too_many_connections_are_refused_and_then_served_again(served):
    import socket

    from gpumarket.provider.api import ProviderServer

    server = ProviderServer(served.agent, "127.0.0.1", 0, max_connections=2, request_timeout_s=2.0).start()
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as third:
            third.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"503" in third.recv(4096).split(b"\r\n", 1)[0]
        for sock in idle:
            sock.close()
        from .support import Http

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if Http("127.0.0.1", server.port).healthy():
                    break
            except Exception:
                pass
            time.sleep(0.1)
        assert Http("127.0.0.1", server.port).healthy()
    finally:
        server.stop()


def test_concurrent_clients_are_all_served(served):
    results: list[int] = []

    def hit() -> None:
        for _ in range(10):
            results.append(served.http.request("GET", "/health").status)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 80
