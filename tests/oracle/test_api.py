"""The oracle's HTTP API against hostile input: each bad request gets a precise 4xx JSON error,
changes nothing stored, and the server keeps serving (a good request right after succeeds).
Plus the good paths: signed reports, pushes, health and the Prometheus text."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from gpumarket.oracle.api import ApiConfig
from gpumarket.oracle.store import ChallengeRecord
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import oracle_key

from .conftest import PROVIDER, hardware_report, job_report

JOB = 5
SECP256K1_N = eip712.SECP256K1_N


def call(url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    """One request on a fresh connection; returns (status, parsed JSON or text, headers)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        all_headers = {"Content-Type": "application/json"}
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        all_headers.update(headers or {})
        for name, value in all_headers.items():
            if value is not None:
                conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        response = conn.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type", "")
        parsed = json.loads(raw) if content_type.startswith("application/json") else raw.decode()
        return response.status, parsed, response.headers  # header names case-insensitive
    finally:
        conn.close()


def snapshot(path: str) -> dict[str, list[tuple]]:
    """Every row of every table, read through a separate connection."""
    raw = sqlite3.connect(path)
    try:
        tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(raw.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        raw.close()


def push_body(report: Any, signature: bytes | str) -> bytes:
    sig = signature if isinstance(signature, str) else "0x" + signature.hex()
    return json.dumps({"report": eip712.to_json(report), "signature": sig}).encode()


@pytest.fixture
def served(make_node, domain):
    """Oracle 0 serving, with job JOB decided and signed."""
    node = make_node(0, serve=True)
    report = job_report(JOB, PROVIDER, gpu_seconds=300)
    node.signer.decide_and_sign(report)
    return node, report


def assert_still_serving(node) -> None:
    status, body, _ = call(node.url, "GET", f"/reports/job/{JOB}")
    assert status == 200 and body["report"]["job_id"] == JOB


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Any, Any], tuple[str, str, bytes | None, dict[str, str]]]  # (report, domain) -> request
    status: int
    error: str
    field: str | None = None
    # Refused for settlement, but a member's valid signature is kept as possible evidence of
    # equivocation (gpumarket.oracle.equivocation): the one row this request may add.
    keeps_evidence: bool = False


def _post(path: str, body: bytes | None, headers: dict[str, str] | None = None):
    return "POST", path, body, headers or {}


def _sig(index: int, domain, report) -> bytes:
    return eip712.sign(oracle_key(index), domain, report)


def _with_report(report, **changes: Any) -> bytes:
    data = eip712.to_json(report)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps({"report": data, "signature": "0x" + "11" * 65}).encode()


def _high_s(domain, report) -> str:
    sig = _sig(1, domain, report)
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    return "0x" + flipped.hex()


P = f"/signatures/job/{JOB}"
CASES = [
    Case("oversized body", lambda r, d: _post(P, b"{" + b" " * 16 * 1024 + b"}"), 413, "body_too_large"),
    Case(
        "huge Content-Length, no body",
        lambda r, d: _post(P, None, {"Content-Length": str(10**12)}),
        413,
        "body_too_large",
    ),
    Case("no Content-Length", lambda r, d: _post(P, None), 411, "length_required"),
    Case("chunked", lambda r, d: _post(P, None, {"Transfer-Encoding": "chunked"}), 411, "length_required"),
    Case(
        "negative Content-Length", lambda r, d: _post(P, None, {"Content-Length": "-1"}), 400, "invalid_content_length"
    ),
    Case(
        "not JSON media type",
        lambda r, d: _post(P, b"{}", {"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    ),
    Case("malformed JSON", lambda r, d: _post(P, b'{"report": {'), 400, "malformed_json"),
    Case("not UTF-8", lambda r, d: _post(P, b'{"report": "\xff"}'), 400, "malformed_json"),
    Case("NaN", lambda r, d: _post(P, b'{"report": NaN}'), 400, "malformed_json"),
    Case("duplicate key", lambda r, d: _post(P, b'{"report": {}, "report": {}}'), 400, "malformed_json"),
    Case("deeply nested array", lambda r, d: _post(P, b"[" * 8000 + b"]" * 8000), 400, "invalid_field"),
    Case("array body", lambda r, d: _post(P, b"[]"), 400, "invalid_field"),
    Case("empty object", lambda r, d: _post(P, b"{}"), 400, "missing_field", "report"),
    Case(
        "missing signature",
        lambda r, d: _post(P, json.dumps({"report": eip712.to_json(r)}).encode()),
        400,
        "missing_field",
        "signature",
    ),
    Case(
        "missing report member",
        lambda r, d: _post(P, _with_report(r, gpu_seconds=...)),
        400,
        "missing_field",
        "report.gpu_seconds",
    ),
    Case(
        "unknown report member", lambda r, d: _post(P, _with_report(r, bonus=1)), 400, "unknown_field", "report.bonus"
    ),
    Case(
        "unknown top-level field",
        lambda r, d: _post(
            P, json.dumps({"report": eip712.to_json(r), "signature": "0x" + "11" * 65, "x": 1}).encode()
        ),
        400,
        "unknown_field",
        "x",
    ),
    Case(
        "report is a list",
        lambda r, d: _post(P, b'{"report": [], "signature": "0x00"}'),
        400,
        "invalid_field",
        "report",
    ),
    Case(
        "gpu_seconds a word",
        lambda r, d: _post(P, _with_report(r, gpu_seconds="lots")),
        400,
        "invalid_field",
        "report.gpu_seconds",
    ),
    Case(
        "gpu_seconds a float",
        lambda r, d: _post(P, _with_report(r, gpu_seconds=1.5)),
        400,
        "invalid_field",
        "report.gpu_seconds",
    ),
    Case(
        "gpu_seconds negative",
        lambda r, d: _post(P, _with_report(r, gpu_seconds=-1)),
        400,
        "invalid_field",
        "report.gpu_seconds",
    ),
    Case(
        "job_id > uint256", lambda r, d: _post(P, _with_report(r, job_id=2**256)), 400, "invalid_field", "report.job_id"
    ),
    Case("outcome 3", lambda r, d: _post(P, _with_report(r, outcome=3)), 400, "invalid_field", "report.outcome"),
    Case(
        "provider not an address",
        lambda r, d: _post(P, _with_report(r, provider="0x12")),
        400,
        "invalid_field",
        "report.provider",
    ),
    Case(
        "result_hash short",
        lambda r, d: _post(P, _with_report(r, result_hash="0x11")),
        400,
        "invalid_field",
        "report.result_hash",
    ),
    Case(
        "signature a number",
        lambda r, d: _post(P, push_body(r, "0x00").replace(b'"0x00"', b"7")),
        400,
        "invalid_field",
        "signature",
    ),
    Case(
        "signature too short", lambda r, d: _post(P, push_body(r, "0x" + "ab" * 64)), 400, "invalid_field", "signature"
    ),
    Case("signature high s", lambda r, d: _post(P, push_body(r, _high_s(d, r))), 400, "invalid_signature", "signature"),
    Case(
        "signature v = 29",
        lambda r, d: _post(P, push_body(r, _sig(1, d, r)[:64] + bytes([29]))),
        400,
        "invalid_signature",
        "signature",
    ),
    Case(
        "another job's report",
        lambda r, d: _post(P, push_body(replace(r, job_id=JOB + 1), _sig(1, d, replace(r, job_id=JOB + 1)))),
        400,
        "key_mismatch",
        "report",
    ),
    Case(
        "a member signed a different report for this job",
        lambda r, d: _post(
            P, push_body(replace(r, outcome=Outcome.FAILED), _sig(1, d, replace(r, outcome=Outcome.FAILED)))
        ),
        409,
        "report_mismatch",
        "report",
        keeps_evidence=True,
    ),
    Case(
        "wrong signature: a member's, over another report, sent with ours",
        lambda r, d: _post(P, push_body(r, _sig(1, d, replace(r, gpu_seconds=1)))),
        403,
        "not_a_member",
        "signature",
    ),
    Case(
        "non-member's signature", lambda r, d: _post(P, push_body(r, _sig(9, d, r))), 403, "not_a_member", "signature"
    ),
    Case(
        "a job we have not decided",
        lambda r, d: _post(
            f"/signatures/job/{JOB + 7}", push_body(replace(r, job_id=JOB + 7), _sig(1, d, replace(r, job_id=JOB + 7)))
        ),
        409,
        "not_decided",
    ),
    Case("job id not a number", lambda r, d: ("GET", "/reports/job/abc", None, {}), 400, "invalid_field", "job_id"),
    Case("job id > uint256", lambda r, d: ("GET", f"/reports/job/{2**256}", None, {}), 400, "invalid_field", "job_id"),
    Case("undecided job", lambda r, d: ("GET", "/reports/job/999", None, {}), 404, "not_decided"),
    Case(
        "bad provider", lambda r, d: ("GET", "/reports/hardware/0xnope/0/5", None, {}), 400, "invalid_field", "provider"
    ),
    Case(
        "bad EIP-55 checksum",
        lambda r, d: (
            "GET",
            "/reports/hardware/" + PROVIDER[:-1] + ("c" if PROVIDER[-1] == "C" else "C") + "/0/5",
            None,
            {},
        ),
        400,
        "invalid_field",
        "provider",
    ),
    Case(
        "valid_until > uint64",
        lambda r, d: ("GET", f"/reports/hardware/{PROVIDER}/0/{2**64}", None, {}),
        400,
        "invalid_field",
        "valid_until",
    ),
    Case(
        "claim_version > uint64",
        lambda r, d: ("GET", f"/reports/hardware/{PROVIDER}/{2**64}/5", None, {}),
        400,
        "invalid_field",
        "claim_version",
    ),
    Case(
        "hardware path without its claim version",
        lambda r, d: ("GET", f"/reports/hardware/{PROVIDER}/5", None, {}),
        404,
        "not_found",
    ),
    Case("unknown route", lambda r, d: ("GET", "/admin", None, {}), 404, "not_found"),
    Case("wrong method", lambda r, d: ("DELETE", f"/reports/job/{JOB}", None, {}), 405, "method_not_allowed"),
    Case("GET on a POST route", lambda r, d: ("GET", P, None, {}), 405, "method_not_allowed"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_is_refused_precisely_and_changes_nothing(served, domain, case):
    node, report = served
    before = snapshot(node.store.path)
    method, path, body, headers = case.build(report, domain)
    status, answer, _ = call(node.url, method, path, body, headers)
    assert (status, answer["error"]) == (case.status, case.error), answer
    assert answer["detail"]
    if case.field is not None:
        assert answer.get("field") == case.field, answer
    assert node.metrics.request_errors.value(code=str(case.status), error=case.error) == 1
    assert_still_serving(node)
    after = snapshot(node.store.path)
    if case.keeps_evidence:
        assert len(after.pop("observed_signatures")) == len(before.pop("observed_signatures")) + 1
    assert after == before


def test_a_replayed_signature_is_refused_and_stored_once(served, domain):
    node, report = served
    body = push_body(report, _sig(1, domain, report))
    status, answer, _ = call(node.url, "POST", P, body)
    assert status == 202 and answer["signer"] == eip712.address_of(oracle_key(1))
    assert (answer["signatures"], answer["threshold"]) == (2, 2)
    after_first = snapshot(node.store.path)
    status, answer, _ = call(node.url, "POST", P, body)
    assert (status, answer["error"]) == (409, "duplicate_signature")
    assert snapshot(node.store.path) == after_first
    assert node.signer.quorum(JOB).signers == tuple(
        sorted((node.key.address, eip712.address_of(oracle_key(1))), key=lambda a: int(a, 16))
    )
    assert node.metrics.peer_signatures.value(source="push", result="accepted") == 1
    assert node.metrics.peer_signatures.value(source="push", result="duplicate") == 1


def raw_exchange(port: int, data: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes; return (status line and headers, body) of the answer ("" head for HTTP/0.9)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    if raw.startswith(b"HTTP/"):
        head, _, body = raw.partition(b"\r\n\r\n")
        return head, body
    return b"", raw  # a request line without a version is answered the HTTP/0.9 way: body only


def test_malformed_http_gets_json_and_the_server_goes_on(served):
    """h11 refuses what is not HTTP/1.1 (an HTTP/1.1 request without a Host header among it); an
    unknown method is a method this path does not allow."""
    node, _ = served
    head, body = raw_exchange(node.api.port, b"GARBAGE\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"] == "bad_request"
    head, body = raw_exchange(node.api.port, b"GET /health HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"] == "bad_request"
    big_header = b"X-Big: " + b"a" * 70_000 + b"\r\n"
    head, body = raw_exchange(node.api.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + big_header + b"\r\n")
    assert head.startswith(b"HTTP/1.1 431") and json.loads(body)["error"] == "headers_too_large"
    head, body = raw_exchange(node.api.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 150 + b"\r\n")
    assert head.startswith(b"HTTP/1.1 431") and json.loads(body)["error"] == "headers_too_large"
    head, body = raw_exchange(node.api.port, b"BREW /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405") and json.loads(body)["error"] == "method_not_allowed"
    assert_still_serving(node)


def test_a_stalled_client_does_not_block_others(make_node):
    node = make_node(0, serve=True, config=ApiConfig(request_timeout_s=1.0, max_body_bytes=16 * 1024))
    node.signer.decide_and_sign(job_report(JOB, PROVIDER))
    with socket.create_connection(("127.0.0.1", node.api.port), timeout=5) as stalled:
        stalled.sendall(f"POST {P} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode())  # then nothing
        assert_still_serving(node)
        stalled.settimeout(5)
        chunks = []  # the server gives up on it after its read timeout, answers and closes
        while chunk := stalled.recv(4096):
            chunks.append(chunk)
        raw = b"".join(chunks)
    assert raw.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in raw
    assert_still_serving(node)


def test_served_report_is_the_signed_decision(served, domain):
    node, report = served
    status, body, headers = call(node.url, "GET", f"/reports/job/{JOB}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert eip712.from_json(body["report"], "job") == report
    signature = bytes.fromhex(body["signature"][2:])
    assert eip712.recover(domain, report, signature) == body["signer"] == node.key.address
    assert body["digest"] == "0x" + eip712.digest(domain, report).hex()
    assert node.metrics.signatures_served.value(kind="job") == 1


def test_a_decided_but_unsigned_report_is_signed_when_served(make_node, domain):
    node = make_node(0, serve=True)
    report = job_report(8, PROVIDER, outcome=Outcome.FAILED)
    node.store.decide(report)  # as after a crash between commit and signing
    status, body, _ = call(node.url, "GET", "/reports/job/8")
    assert status == 200 and bytes.fromhex(body["signature"][2:]) == eip712.sign(oracle_key(0), domain, report)
    assert node.store.job_decision(8).signature is not None


def test_hardware_report_and_push(make_node, domain):
    node = make_node(0, serve=True)
    report = hardware_report(PROVIDER, 1, 4, 4 * 10**12, 1_900_000_000, claim_version=3)
    node.signer.decide_and_sign(report)
    status, body, _ = call(node.url, "GET", f"/reports/hardware/{PROVIDER.lower()}/3/1900000000")
    assert status == 200 and eip712.from_json(body["report"], "hardware") == report
    status, body, _ = call(node.url, "GET", f"/reports/hardware/{PROVIDER}/2/1900000000")  # another claim
    assert (status, body["error"]) == (404, "not_decided")
    path = f"/signatures/hardware/{PROVIDER}/3/1900000000"
    status, _, _ = call(node.url, "POST", path, push_body(report, _sig(2, domain, report)))
    assert status == 202
    for other in (replace(report, valid_until=1_900_000_001), replace(report, claim_version=4)):
        status, body, _ = call(node.url, "POST", path, push_body(other, _sig(2, domain, other)))
        assert (status, body["error"]) == (400, "key_mismatch")


def test_health(served, members):
    node, _ = served
    status, body, _ = call(node.url, "GET", "/health")
    assert status == 200
    assert body["status"] == "ok" and body["address"] == node.key.address
    assert (body["epoch"], body["threshold"], body["member"]) == (1, 2, True)
    assert body["counts"]["job_decisions"] == 1 and body["counts"]["signatures"] == 1


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})?'
    r" (?P<value>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)$"
)


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    samples: dict[tuple[str, str], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        assert match["name"] in typed, f"{match['name']} has no TYPE line before it"
        samples[(match["name"], match["labels"] or "")] = float(match["value"])
    return samples


def test_metrics_parse_and_count(served, domain):
    node, report = served
    call(node.url, "POST", P, b"{")
    call(node.url, "POST", P, push_body(report, _sig(1, domain, report)))
    call(node.url, "GET", f"/reports/job/{JOB}")
    status, text, headers = call(node.url, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(text)
    assert samples[("gpumarket_oracle_decisions_total", 'kind="job"')] == 1
    assert samples[("gpumarket_oracle_signatures_served_total", 'kind="job"')] == 1
    assert samples[("gpumarket_oracle_peer_signatures_total", 'result="accepted",source="push"')] == 1
    assert samples[("gpumarket_oracle_http_request_errors_total", 'code="400",error="malformed_json"')] == 1
    assert samples[("gpumarket_oracle_stored_signatures", 'origin="peer"')] == 1
    assert samples[("gpumarket_oracle_epoch", "")] == 1
    assert ("gpumarket_oracle_settlement_submissions_total", "") not in samples  # a labelled family, none yet


def test_concurrent_requests_all_answered(served, domain):
    node, report = served
    errors: list[str] = []

    def worker(index: int) -> None:
        for _ in range(10):
            status, _, _ = call(node.url, "GET", f"/reports/job/{JOB}")
            if status != 200:
                errors.append(f"GET {status}")
            status, _, _ = call(node.url, "POST", P, b"nope")
            if status != 400:
                errors.append(f"POST {status}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert node.metrics.requests.value(route="/reports/job/{id}", code="200") == 80


def test_challenges_route_serves_what_the_job_loop_recorded(make_node):
    node = make_node(0, serve=True)
    assert call(node.url, "GET", f"/challenges/job/{JOB}")[:2] == (200, {"challenges": []})  # none run yet
    node.store.record_challenge(JOB, ChallengeRecord("heartbeat", 1_700_000_010.5, None, 4.0, "no answer"))
    node.store.record_challenge(JOB, ChallengeRecord("start", 1_700_000_000.0, 9.25, 4.0, "pass"))
    node.store.record_challenge(JOB + 1, ChallengeRecord("start", 1_700_000_001.0, 1.0, 4.0, "fail"))
    status, body, _ = call(node.url, "GET", f"/challenges/job/{JOB}")
    assert status == 200
    assert body["challenges"] == [  # this job's only, oldest first
        {"kind": "start", "at": 1_700_000_000.0, "measured_gops": 9.25, "required_gops": 4.0, "verdict": "pass"},
        {"kind": "heartbeat", "at": 1_700_000_010.5, "measured_gops": None, "required_gops": 4.0}
        | {"verdict": "no answer"},
    ]
    status, body, _ = call(node.url, "GET", "/challenges/job/seven")
    assert status == 400 and body["error"] == "invalid_field"


def test_the_last_settlement_is_a_metric_once_there_is_one(served):
    node, report = served
    samples = parse_metrics(call(node.url, "GET", "/metrics")[1])
    assert ("gpumarket_oracle_last_settlement_timestamp_seconds", "") not in samples
    node.store.mark_settled(JOB, "0x" + "ab" * 32)
    samples = parse_metrics(call(node.url, "GET", "/metrics")[1])
    assert samples[("gpumarket_oracle_last_settlement_timestamp_seconds", "")] == node.store.last_settled_at() > 0
