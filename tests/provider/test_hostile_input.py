"""Hostile input to the provider agent's HTTP API: the cases tests/provider/test_api.py and
test_challenge_api.py leave out, each checked for its precise status and error code, a valid
request answered right after, and nothing stored changed (every SQLite table and the jobs folder).

Already covered there: oversized bodies (413 before reading, for specs, challenges and openings),
missing/chunked/negative/truncated lengths, malformed JSON and messages, every signature refusal
(missing, malformed, forged, expired, wrong signer, wrong scope), a spec whose hash is not the
on-chain one, another client's result before the job ends, replayed nonces and challenges,
request lines and headers h11 refuses. Added here: JSON nested too deep to parse (in a spec, an
opening request, the Authorization token), a Content-Length in non-ASCII digits, an over-long
URI (431: the request line counts in the request head, capped as a whole), a stalled body,
another client's result after the end, replays of every kind against a finished job and across
an agent restart, and a whole ProviderService run (keys from an ape keystore, passphrase from the
environment) whose DEBUG logs carry no key material.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from gpumarket.agentapi.auth import sign_request
from gpumarket.measure.classes import CPU_DEV
from gpumarket.measure.messages import Commitment
from gpumarket.measure.provers import make_prover
from gpumarket.measure.verifier import Verifier
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.runtime import RuntimeSettings
from gpumarket.provider.store import Store

from .support import CHAIN_ID, MARKET, Http, python_spec

DONE, WAITING = 7, 8  # a finished job; a job running on chain whose spec has not come
SPEC = python_spec("open('answer.txt', 'w').write('42')", outputs=["answer.txt"])


def spec_header(signer, job_id: int, spec=SPEC) -> dict[str, str]:
    signed = sign_request(
        signer, action="put-spec", chain_id=CHAIN_ID, market=MARKET, job_id=job_id, spec_hash=spec.hash()
    )
    return {"Authorization": signed.to_header()}


def result_header(signer, job_id: int = DONE) -> dict[str, str]:
    signed = sign_request(signer, action="get-result", chain_id=CHAIN_ID, market=MARKET, job_id=job_id)
    return {"Authorization": signed.to_header()}


def snapshot(db: Path, jobs_root: Path) -> tuple[dict[str, list[tuple]], list[str]]:
    """Every row of every table (read through a connection of its own) and every job file."""
    raw = sqlite3.connect(db)
    try:
        tables = [row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {table: sorted(raw.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in tables}
    finally:
        raw.close()
    return rows, sorted(str(path.relative_to(jobs_root)) for path in jobs_root.rglob("*"))


def parse_raw(answer: bytes) -> tuple[int, str | None]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body).get("error")


def wait_finished(http: Http, job_id: int, timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while (status := http.request("GET", f"/jobs/{job_id}/status").json())["state"] not in ("finished", "lost"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


@dataclass
class World:
    """An agent with a finished job, a job waiting for its spec and an answered challenge, plus
    the requests that were used once (to replay them)."""

    served: object
    client: object
    other: object
    spec_used: dict[str, str]
    result_used: dict[str, str]
    challenge: bytes
    opening: bytes

    @property
    def http(self) -> Http:
        return self.served.http  # type: ignore[attr-defined]


@pytest.fixture
def world(served, client_account, other_client, provider_account) -> World:
    for job_id in (DONE, WAITING):
        served.jobs.put(job_id, client=client_account.address, provider=provider_account.address, spec_hash=SPEC.hash())
    spec_used = spec_header(client_account, DONE)
    assert served.http.request("PUT", f"/jobs/{DONE}/spec", SPEC.canonical_bytes(), spec_used).status == 202
    assert wait_finished(served.http, DONE)["state"] == "finished"
    assert served.agent.wait_idle(10)
    result_used = result_header(client_account)
    assert served.http.request("GET", f"/jobs/{DONE}/result", headers=result_used).status == 200
    verifier = Verifier()
    challenge = verifier.issue(CPU_DEV)
    answer = served.http.request("POST", "/challenge", challenge.to_bytes())
    assert answer.status == 200, answer.body
    opening = verifier.receive_commitment(Commitment.parse(answer.body)).to_bytes()
    assert served.http.request("POST", "/challenge/open", opening).status == 200
    return World(served, client_account, other_client, spec_used, result_used, challenge.to_bytes(), opening)


def _token(payload: bytes) -> dict[str, str]:
    return {"Authorization": "GpuMarket " + base64.urlsafe_b64encode(payload).decode()}


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[World], tuple[int, str | None]]
    status: int
    error: str


def _request(
    method: str,
    path: str,
    body: Callable[[World], bytes | None] = lambda w: None,
    headers: Callable[[World], dict[str, str]] = lambda w: {},
) -> Callable[[World], tuple[int, str | None]]:
    def send(w: World) -> tuple[int, str | None]:
        response = w.http.request(method, path, body(w), headers(w))
        return response.status, response.error

    return send


def _raw(payload: bytes) -> Callable[[World], tuple[int, str | None]]:
    return lambda w: parse_raw(w.http.raw(payload))


WAITING_SPEC = f"/jobs/{WAITING}/spec"
CASES = [
    Case(
        "spec nested too deep to parse",
        _request("PUT", WAITING_SPEC, lambda w: b"[" * 5000 + b"]" * 5000, lambda w: spec_header(w.client, WAITING)),
        400,
        "malformed_json",
    ),
    Case(
        "spec object nested too deep to parse",
        _request(
            "PUT",
            WAITING_SPEC,
            lambda w: b'{"a":' * 3000 + b"1" + b"}" * 3000,
            lambda w: spec_header(w.client, WAITING),
        ),
        400,
        "malformed_json",
    ),
    Case(
        "opening request nested too deep to parse",
        _request("POST", "/challenge/open", lambda w: b"[" * 8000 + b"]" * 8000),
        400,
        "malformed_json",
    ),
    Case(
        "Authorization token nested too deep to parse",
        _request("PUT", WAITING_SPEC, lambda w: SPEC.canonical_bytes(), lambda w: _token(b"[" * 1500)),
        401,
        "malformed_auth",
    ),
    Case(
        "Authorization token with a truncated signature",
        _request(
            "PUT",
            WAITING_SPEC,
            lambda w: SPEC.canonical_bytes(),
            lambda w: _token(
                json.dumps(
                    {
                        **json.loads(
                            base64.urlsafe_b64decode(spec_header(w.client, WAITING)["Authorization"].split(" ", 1)[1])
                        ),
                        "signature": "0x1234",
                    }
                ).encode()
            ),
        ),
        401,
        "malformed_auth",
    ),
    Case(
        "Content-Length in non-ASCII digits",
        _raw(b"PUT " + WAITING_SPEC.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nab"),
        400,
        "invalid_content_length",
    ),
    # The request line is part of the request head, which the server caps as a whole.
    Case("URI too long", _raw(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"), 431, "headers_too_large"),
    Case(
        "another client asks for the finished job's result",
        _request("GET", f"/jobs/{DONE}/result", headers=lambda w: result_header(w.other)),
        403,
        "wrong_signer",
    ),
    Case(
        "the result request replayed",
        _request("GET", f"/jobs/{DONE}/result", headers=lambda w: w.result_used),
        409,
        "replayed",
    ),
    Case(
        "the spec request replayed",
        _request("PUT", f"/jobs/{DONE}/spec", lambda w: SPEC.canonical_bytes(), lambda w: w.spec_used),
        409,
        "replayed",
    ),
    Case(
        "another spec for the finished job",
        _request(
            "PUT",
            f"/jobs/{DONE}/spec",
            lambda w: python_spec("print(2)").canonical_bytes(),
            lambda w: spec_header(w.client, DONE, python_spec("print(2)")),
        ),
        409,
        "spec_hash_mismatch",
    ),
    Case("the challenge replayed", _request("POST", "/challenge", lambda w: w.challenge), 409, "replayed_challenge"),
    Case("the opening replayed", _request("POST", "/challenge/open", lambda w: w.opening), 409, "replayed_challenge"),
]


@contextlib.contextmanager
def default_recursion_limit() -> Iterator[None]:
    """Python's default recursion limit, which ``gpumarket provider run`` runs with: the embedded
    chain's py_ecc raises it to 100,000 in this test process, where deep JSON would parse."""
    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(raised)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_request_is_refused_precisely_and_changes_nothing(world, case, tmp_path):
    served = world.served
    before = snapshot(tmp_path / "agent.sqlite", served.runner.config.root)  # type: ignore[attr-defined]
    with default_recursion_limit():  # the server's threads answer while it applies
        answer = case.send(world)
    assert answer == (case.status, case.error)
    assert world.http.healthy()
    assert world.http.request("GET", f"/jobs/{DONE}/status").json()["state"] == "finished"
    assert snapshot(tmp_path / "agent.sqlite", served.runner.config.root) == before  # type: ignore[attr-defined]
    # A valid request still works, and the waiting job's spec was never taken.
    assert world.http.request("GET", f"/jobs/{DONE}/result", headers=result_header(world.client)).status == 200
    assert world.http.request("GET", f"/jobs/{WAITING}/status").error == "unknown_job"


def test_a_stalled_body_is_408_and_does_not_hold_up_others(world, tmp_path):
    served = world.served
    before = snapshot(tmp_path / "agent.sqlite", served.runner.config.root)  # type: ignore[attr-defined]
    server = ProviderServer(served.agent, "127.0.0.1", 0, request_timeout_s=1.0).start()  # type: ignore[attr-defined]
    try:
        http = Http("127.0.0.1", server.port)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
            stalled.sendall(f"PUT {WAITING_SPEC} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode())
            assert http.healthy()  # served while the stalled request waits
            answer = b""
            while chunk := stalled.recv(65536):
                answer += chunk
        assert parse_raw(answer) == (408, "request_timeout")
        assert http.healthy()
    finally:
        server.stop()
    assert snapshot(tmp_path / "agent.sqlite", served.runner.config.root) == before  # type: ignore[attr-defined]


def test_replays_are_refused_after_a_restart(tmp_path, runner, jobs, client_account, provider_account):
    config = AgentConfig(address=provider_account.address, chain_id=CHAIN_ID, market=MARKET)

    @dataclass
    class Running:
        store: Store
        agent: ProviderAgent
        server: ProviderServer
        http: Http

        def stop(self) -> None:
            self.server.stop()
            self.agent.close(stop_jobs=True)
            self.store.close()

    def start() -> Running:
        store = Store(tmp_path / "agent.sqlite")
        agent = ProviderAgent(config, store, runner, jobs, make_prover("numpy"))
        agent.recover()
        server = ProviderServer(agent, "127.0.0.1", 0, request_timeout_s=5.0).start()
        return Running(store, agent, server, Http("127.0.0.1", server.port))

    jobs.put(DONE, client=client_account.address, provider=provider_account.address, spec_hash=SPEC.hash())
    first = start()
    try:
        spec_used = spec_header(client_account, DONE)
        assert first.http.request("PUT", f"/jobs/{DONE}/spec", SPEC.canonical_bytes(), spec_used).status == 202
        wait_finished(first.http, DONE)
        result_used = result_header(client_account)
        assert first.http.request("GET", f"/jobs/{DONE}/result", headers=result_used).status == 200
        verifier = Verifier()
        challenge = verifier.issue(CPU_DEV).to_bytes()
        answer = first.http.request("POST", "/challenge", challenge)
        opening = verifier.receive_commitment(Commitment.parse(answer.body)).to_bytes()
        assert first.http.request("POST", "/challenge/open", opening).status == 200
    finally:
        first.stop()

    second = start()
    try:
        http = second.http
        replays = [
            (http.request("PUT", f"/jobs/{DONE}/spec", SPEC.canonical_bytes(), spec_used), 409, "replayed"),
            (http.request("GET", f"/jobs/{DONE}/result", headers=result_used), 409, "replayed"),
            (http.request("POST", "/challenge", challenge), 409, "replayed_challenge"),
            (http.request("POST", "/challenge/open", opening), 409, "replayed_challenge"),
        ]
        for response, status, error in replays:
            assert (response.status, response.error) == (status, error), response.body
        assert http.request("GET", f"/jobs/{DONE}/result", headers=result_header(client_account)).status == 200
        assert http.request("POST", "/challenge", Verifier().issue(CPU_DEV).to_bytes()).status == 200
    finally:
        second.stop()


# --------------------------------------------------------------------------- a ProviderService run

PASSPHRASE = "provider hostile-input test passphrase"
ALIAS = "provider-hostile"


def _secret_forms(secret: bytes) -> list[str]:
    text = secret.hex()
    return [text, text.upper(), "0x" + text, base64.b64encode(secret).decode(), repr(secret)[2:-1]]


@pytest.fixture
def provider_keystore(tmp_path: Path, monkeypatch) -> Iterator[tuple[Path, bytes]]:
    """An ape accounts folder with a fresh provider key; its passphrase only in the environment."""
    secret = os.urandom(32)
    folder = tmp_path / "ape-accounts"
    folder.mkdir()
    (folder / f"{ALIAS}.json").write_text(
        json.dumps(Account.encrypt(secret, PASSPHRASE, kdf="pbkdf2", iterations=1000))
    )
    monkeypatch.setenv(f"APE_ACCOUNTS_{ALIAS}_PASSPHRASE", PASSPHRASE)
    yield folder, secret


def test_a_provider_service_run_logs_no_key_material(tmp_path, provider_keystore, caplog):
    from gpumarket.chain.artifacts import load_artifacts
    from gpumarket.chain.connection import EMBEDDED, connect, fund, latest_timestamp
    from gpumarket.chain.keys import load_key, test_account
    from gpumarket.chain.market_deploy import deploy_market_web3
    from gpumarket.chain.params import load_params
    from gpumarket.client.jobs import JobClient
    from gpumarket.provider.service import ProviderService, ServiceConfig
    from gpumarket.testing.committee import Committee, hardware_report

    caplog.set_level(logging.DEBUG)
    accounts_dir, secret = provider_keystore
    w3 = connect(EMBEDDED)
    params = load_params(Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml")
    deployment = deploy_market_web3(w3, test_account(0), params, artifacts=load_artifacts())
    key = load_key(f"keystore:{ALIAS}", accounts_dir=accounts_dir)
    fund(w3, key.address, 10**20)
    market = deployment.market_at(w3, signer=key)
    market.stake_token.mint(key.address, 10**24)
    market.stake_token.approve(market.address)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    market.register(CPU_DEV.id, 1, 10**12, f"http://127.0.0.1:{port}")
    report = hardware_report(
        key.address, CPU_DEV.id, 1, market.class_floor(CPU_DEV.id), latest_timestamp(w3) + 86_400, epoch=market.epoch()
    )
    market.submit_hardware_report(report, Committee.of_size(3, threshold=2).sign(market.domain, report))
    market.stake(params.parameters.min_stake + 10**20)

    service = ProviderService(
        ServiceConfig(
            rpc=EMBEDDED,
            deployment=deployment,
            key=key,
            db_path=tmp_path / "provider.sqlite",
            workdir=tmp_path / "jobs",
            port=port,
            backend="numpy",
            confirmations=0,
            poll_interval=0.05,
            meter_interval=0.1,
            runtime=RuntimeSettings(kind="process"),
        ),
        w3=w3,
    ).start()
    try:
        client_key = test_account(4)
        client_market = deployment.market_at(w3, signer=client_key)
        client_market.payment_token.mint(client_key.address, 10**24)
        client = JobClient(client_market, client_key)
        job_id = client.create_job(
            SPEC, gpu_class=CPU_DEV.id, gpu_count=1, max_price=10**12, max_duration=600, provider=key.address
        )
        client.wait_running(job_id, timeout_s=30)
        http = Http("127.0.0.1", port)
        # Hostile requests at the service itself, then the real ones.
        assert http.request("PUT", f"/jobs/{job_id}/spec", b"{" * 70_000).error == "body_too_large"
        assert (
            http.request(
                "PUT", f"/jobs/{job_id}/spec", SPEC.canonical_bytes(), spec_header(test_account(6), job_id)
            ).error
            == "wrong_scope"
        )  # other chain id
        client.send_spec(job_id, SPEC)
        wait_finished(http, job_id)
        assert client.fetch_result(job_id).contents["outputs/answer.txt"] == b"42"
        assert http.request("GET", f"/jobs/{job_id}/result").error == "missing_auth"
        assert http.healthy()
    finally:
        service.stop()
        service.close()
    text = caplog.text + "\n".join(repr(record.args) for record in caplog.records)
    assert "listening on" in text and f"job {job_id}" in text  # the logs did run, at DEBUG
    assert PASSPHRASE not in text
    for form in _secret_forms(secret):
        assert form not in text
