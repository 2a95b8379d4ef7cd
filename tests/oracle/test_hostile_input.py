"""Hostile input to the oracle's HTTP API: the cases tests/oracle/test_api.py leaves out, each
checked for its precise status and error code, a valid request answered right after, and every
table of the store unchanged.

Already covered there (job push route): oversized bodies and lengths, missing/chunked/negative
lengths, media type, malformed, non-UTF-8, NaN, duplicate-key and deeply nested JSON, every
missing/unknown/invalid field, malformed, high-s, bad-v and non-member signatures, a member's
signature over another report, another job's report, a report that is not our decision, a job
not decided, a replayed signature, bad path segments, routes, methods, garbage request lines,
oversized headers, a stalled body. Added here: a report of an epoch with no recorded committee,
the hardware push route's refusals and replay, our own signature pushed back, a signature made
for another deployment (EIP-712 domain), an over-long URI (431: the request line counts in the
request head, which the server caps as a whole), a Content-Length in non-ASCII digits,
and a whole OracleService run on the embedded chain (its key from an ape keystore, the
passphrase from the environment) under hostile pushes, whose DEBUG logs carry no key material.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain
from gpumarket.testing.committee import oracle_key

from .conftest import CHAIN_ID, CONTRACT, PROVIDER, hardware_report, job_report
from .test_api import call, push_body, snapshot

JOB = 5
NEXT_EPOCH_JOB = 6
VALID_UNTIL = 1_900_000_000
HW_PATH = f"/signatures/hardware/{PROVIDER}/0/{VALID_UNTIL}"


def sign(index: int, domain: Domain, report: Any) -> bytes:
    return eip712.sign(oracle_key(index), domain, report)


@dataclass
class Served:
    node: Any
    domain: Domain
    job: Any
    next_epoch_job: Any
    hardware: Any


@pytest.fixture
def served(make_node, domain) -> Served:
    """Oracle 0 serving, having decided and signed: job JOB (epoch 1), job NEXT_EPOCH_JOB in epoch
    2 (whose committee it has not recorded yet), and a hardware report whose member-2 signature
    it already holds."""
    node = make_node(0, serve=True)
    job = job_report(JOB, PROVIDER, gpu_seconds=300)
    next_epoch_job = job_report(NEXT_EPOCH_JOB, PROVIDER, gpu_seconds=300, epoch=2)
    hardware = hardware_report(PROVIDER, 1, 4, 4 * 10**12, VALID_UNTIL)
    for report in (job, next_epoch_job, hardware):
        node.signer.decide_and_sign(report)
    node.store.add_peer_signature(hardware, sign(2, domain, hardware))
    return Served(node, domain, job, next_epoch_job, hardware)


def raw_answer(port: int, payload: bytes) -> tuple[int, str]:
    """Sends raw bytes; the status and error code of the first answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return int(head.split(b" ", 2)[1]), json.loads(rest[:length])["error"]  # the first answer only


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[Served], tuple[int, str]]
    status: int
    error: str
    field: str | None = None
    # Refused for settlement, but a member's valid signature is kept as possible evidence of
    # equivocation (gpumarket.oracle.equivocation): the one row this request may add.
    keeps_evidence: bool = False


def _post(path: str, body: Callable[[Served], bytes], headers: dict[str, str] | None = None):
    def send(s: Served) -> tuple[int, str]:
        status, answer, _ = call(s.node.url, "POST", path, body(s), headers)
        assert answer["detail"] and answer.get("field") == FIELDS.get((path, answer["error"]))
        return status, answer["error"]

    return send


def _get(path: str):
    def send(s: Served) -> tuple[int, str]:
        status, answer, _ = call(s.node.url, "GET", path)
        return status, answer["error"]

    return send


FIELDS = {  # the field each refusal names, where it names one
    (f"/signatures/job/{NEXT_EPOCH_JOB}", "unknown_epoch"): "report.epoch",
    (HW_PATH, "not_a_member"): "signature",
    (HW_PATH, "report_mismatch"): "report",
    (HW_PATH, "key_mismatch"): "report",
    (f"/signatures/job/{JOB}", "not_a_member"): "signature",
}
OTHER_DEPLOYMENT = Domain(chain_id=CHAIN_ID + 1, verifying_contract=CONTRACT)

CASES = [
    Case(
        "a member's signature of a report in an epoch with no recorded committee",
        _post(
            f"/signatures/job/{NEXT_EPOCH_JOB}",
            lambda s: push_body(s.next_epoch_job, sign(1, s.domain, s.next_epoch_job)),
        ),
        409,
        "unknown_epoch",
    ),
    Case(
        "our own signature pushed back to us",
        _post(f"/signatures/job/{JOB}", lambda s: push_body(s.job, sign(0, s.domain, s.job))),
        409,
        "duplicate_signature",
    ),
    Case(
        "a member's signature made for another deployment",
        _post(f"/signatures/job/{JOB}", lambda s: push_body(s.job, sign(1, OTHER_DEPLOYMENT, s.job))),
        403,
        "not_a_member",
    ),
    Case("hardware: oversized body", _post(HW_PATH, lambda s: b"[" + b" " * 16 * 1024 + b"]"), 413, "body_too_large"),
    Case("hardware: malformed JSON", _post(HW_PATH, lambda s: b'{"report": '), 400, "malformed_json"),
    Case(
        "hardware: non-member's signature",
        _post(HW_PATH, lambda s: push_body(s.hardware, sign(9, s.domain, s.hardware))),
        403,
        "not_a_member",
    ),
    Case(
        "hardware: a member signed another claim for the same provider and time",
        _post(
            HW_PATH,
            lambda s: push_body(replace(s.hardware, gpu_count=8), sign(1, s.domain, replace(s.hardware, gpu_count=8))),
        ),
        409,
        "report_mismatch",
        keeps_evidence=True,
    ),
    Case(
        "hardware: another provider's report on this URL",
        _post(
            HW_PATH,
            lambda s: push_body(
                replace(s.hardware, provider=s.node.key.address),
                sign(1, s.domain, replace(s.hardware, provider=s.node.key.address)),
            ),
        ),
        400,
        "key_mismatch",
    ),
    Case(
        "hardware: a report of another claim version on this URL",
        _post(
            HW_PATH,
            lambda s: push_body(
                replace(s.hardware, claim_version=1), sign(1, s.domain, replace(s.hardware, claim_version=1))
            ),
        ),
        400,
        "key_mismatch",
    ),
    Case(
        "hardware: a signature replayed",
        _post(HW_PATH, lambda s: push_body(s.hardware, sign(2, s.domain, s.hardware))),
        409,
        "duplicate_signature",
    ),
    Case(
        "hardware: a report not decided",
        _post(
            f"/signatures/hardware/{PROVIDER}/0/{VALID_UNTIL + 1}",
            lambda s: push_body(
                replace(s.hardware, valid_until=VALID_UNTIL + 1),
                sign(1, s.domain, replace(s.hardware, valid_until=VALID_UNTIL + 1)),
            ),
        ),
        409,
        "not_decided",
    ),
    Case(
        "hardware: GET a report not decided",
        _get(f"/reports/hardware/{PROVIDER}/0/{VALID_UNTIL + 1}"),
        404,
        "not_decided",
    ),
    # The request line is part of the request head, which the server caps as a whole.
    Case(
        "URI too long",
        lambda s: raw_answer(s.node.api.port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        431,
        "headers_too_large",
    ),
    Case(
        "Content-Length in non-ASCII digits",
        lambda s: raw_answer(
            s.node.api.port,
            f"POST /signatures/job/{JOB} HTTP/1.1\r\nHost: x\r\nContent-Type: "
            "application/json\r\nContent-Length: ".encode()
            + b"\xb2\r\n\r\nab",
        ),
        400,
        "invalid_content_length",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_is_refused_precisely_and_changes_nothing(served, case):
    node = served.node
    before = snapshot(node.store.path)
    assert case.send(served) == (case.status, case.error)
    after = snapshot(node.store.path)
    if case.keeps_evidence:
        assert len(after.pop("observed_signatures")) == len(before.pop("observed_signatures")) + 1
    assert after == before
    # The oracle keeps serving: a valid report and a valid push right after.
    status, body, _ = call(node.url, "GET", f"/reports/job/{JOB}")
    assert status == 200 and body["report"]["job_id"] == JOB
    status, body, _ = call(
        node.url, "POST", f"/signatures/job/{JOB}", push_body(served.job, sign(1, served.domain, served.job))
    )
    assert (status, body["signatures"], body["threshold"]) == (202, 2, 2)


# --------------------------------------------------------------------------- an OracleService run

PASSPHRASE = "oracle hostile-input test passphrase"


def _write_keystore(folder: Path, alias: str, secret: bytes, monkeypatch) -> None:
    (folder / f"{alias}.json").write_text(
        json.dumps(Account.encrypt(secret, PASSPHRASE, kdf="pbkdf2", iterations=1000))
    )
    monkeypatch.setenv(f"APE_ACCOUNTS_{alias}_PASSPHRASE", PASSPHRASE)


def _secret_forms(secret: bytes) -> list[str]:
    text = secret.hex()
    return [text, text.upper(), "0x" + text, base64.b64encode(secret).decode(), repr(secret)[2:-1]]


def test_an_oracle_service_under_hostile_pushes_serves_on_and_logs_no_key(tmp_path, monkeypatch, caplog):
    from gpumarket.chain.artifacts import load_artifacts
    from gpumarket.chain.connection import EMBEDDED, connect, fund
    from gpumarket.chain.keys import load_key, test_account
    from gpumarket.chain.market_deploy import deploy_market_web3
    from gpumarket.chain.params import load_params
    from gpumarket.oracle.service import OracleService, OracleServiceConfig

    caplog.set_level(logging.DEBUG)
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    signing_secret, sender_secret = oracle_key(0), os.urandom(32)  # oracle 0 is in the default committee
    _write_keystore(accounts, "oracle-zero", signing_secret, monkeypatch)
    _write_keystore(accounts, "oracle-sender", sender_secret, monkeypatch)
    w3 = connect(EMBEDDED)
    params = load_params(Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml")
    deployment = deploy_market_web3(w3, test_account(0), params, artifacts=load_artifacts())
    key = load_key("keystore:oracle-zero", accounts_dir=accounts)
    sender = load_key("keystore:oracle-sender", accounts_dir=accounts)
    fund(w3, sender.address, 10**20)
    service = OracleService(
        OracleServiceConfig(
            rpc=EMBEDDED,
            deployment=deployment,
            key=key,
            sender=sender,
            db_path=tmp_path / "oracle.sqlite",
            port=0,
            confirmations=0,
            poll_interval=0.1,
            tick_interval=0.1,
        ),
        w3=w3,
    ).start()
    try:
        domain = service.store.domain
        report = job_report(77, PROVIDER, gpu_seconds=12)
        service.signer.decide_and_sign(report)
        path = "/signatures/job/77"
        before = snapshot(service.store.path)
        hostile = [
            (b"{" * 20_000, 413, "body_too_large"),
            (b'{"report": {', 400, "malformed_json"),
            (push_body(report, sign(9, domain, report)), 403, "not_a_member"),
            (push_body(report, sign(1, OTHER_DEPLOYMENT, report)), 403, "not_a_member"),
            (
                push_body(replace(report, gpu_seconds=13), sign(1, domain, replace(report, gpu_seconds=13))),
                409,
                "report_mismatch",
            ),
        ]
        for body, status, error in hostile:
            answer = call(service.url, "POST", path, body)
            assert (answer[0], answer[1]["error"]) == (status, error), answer
            assert call(service.url, "GET", "/health")[0] == 200
        after = snapshot(service.store.path)
        # Only the member's signature of another report is kept (as evidence of equivocation).
        assert [row[3] for row in after.pop("observed_signatures")] == [eip712.address_of(oracle_key(1))]
        before.pop("observed_signatures")
        assert after == before
        good = push_body(report, sign(1, domain, report))
        assert call(service.url, "POST", path, good)[0] == 202
        assert call(service.url, "POST", path, good)[1]["error"] == "duplicate_signature"  # the replay
        assert len(service.signer.quorum(77).signers) == 2  # our signature and the valid push: the quorum
    finally:
        service.stop()
        service.close()
    text = caplog.text + "\n".join(repr(record.args) for record in caplog.records)
    assert "decided job 77" in text and "listening on" in text  # the logs did run, at DEBUG
    assert PASSPHRASE not in text
    for secret in (signing_secret, sender_secret):
        for form in _secret_forms(secret):
            assert form not in text
