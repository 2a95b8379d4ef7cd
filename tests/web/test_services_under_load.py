"""Both services (the oracle's API, the provider agent's API) under the loads gpumarket.web.server
bounds, over real HTTP on loopback: 500 connections at once, stalled and trickled requests, a
burst of oversized bodies, bytes past a body's Content-Length. Each time every answer is the JSON
envelope with its precise status, /health answers afterwards, and nothing stored changes.

The services are the real ones (SQLite stores in tmp_path, real signatures, the numpy prover);
the clients are raw sockets driven by asyncio, so hundreds of them cost one thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpumarket.chain.keys import test_oracle
from gpumarket.measure.classes import CPU_DEV
from gpumarket.measure.messages import TURN_HEADER
from gpumarket.measure.provers import make_prover
from gpumarket.measure.verifier import Verifier
from gpumarket.oracle.api import ApiConfig, OracleAPI
from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import BODY_LIMITS, ProviderServer
from gpumarket.provider.runner import Runner, RunnerConfig
from gpumarket.provider.store import Store
from gpumarket.signing.eip712 import Domain
from gpumarket.testing.committee import job_report
from helpers.waiting import eventually
from provider.support import CHAIN_ID, MARKET, MemoryJobSource, account

JOB = 5
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ANSWER_TIMEOUT_S = 60.0  # generous: a loaded 2-core machine is slow, a hung server is not


@dataclass
class Service:
    """A running service: where it listens, its body route and limit, requests that change
    nothing (each with the statuses it may get when admitted), and what it has stored."""

    port: int
    body_method: str
    body_path: str
    body_limit: int
    harmless: list[tuple[bytes, set[int]]]
    stored: list[Path]
    stop: Callable[[], None]
    agent: ProviderAgent | None = None

    def snapshot(self) -> list[object]:
        """Every row of every table of its SQLite files, and the files under its folders."""
        state: list[object] = []
        for path in self.stored:
            if path.is_dir():
                state.append(sorted(str(p.relative_to(path)) for p in path.rglob("*")))
                continue
            raw = sqlite3.connect(path)
            try:
                tables = [
                    r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                ]
                state.append({t: sorted(raw.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables})
            finally:
                raw.close()
        return state


def raw_request(
    method: str, path: str, body: bytes | None = None, *, close: bool = True, length: int | None = None
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n"
    if body is not None or length is not None:
        head += (
            f"Content-Type: application/json\r\nContent-Length: {len(body or b'') if length is None else length}\r\n"
        )
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + (body or b"")


HEALTH = raw_request("GET", "/health")


def start_oracle(tmp_path: Path, *, max_connections: int, request_timeout_s: float) -> Service:
    key = test_oracle(0)
    store = DecisionStore.open(tmp_path / "oracle.db", Domain(chain_id=1337, verifying_contract=MARKET), key.address)
    store.set_committee(1, [test_oracle(i).address for i in range(3)], 2)
    metrics = OracleMetrics()
    signer = OracleSigner(store, key, metrics)
    signer.decide_and_sign(job_report(JOB, PROVIDER, gpu_seconds=300))
    config = ApiConfig(max_connections=max_connections, request_timeout_s=request_timeout_s)
    api = OracleAPI(store, signer, metrics, config).start()

    def stop() -> None:
        api.stop()
        store.close()

    push = f"/signatures/job/{JOB}"
    harmless = [
        (HEALTH, {200}),
        (raw_request("GET", f"/reports/job/{JOB}"), {200}),
        (raw_request("GET", "/reports/job/999"), {404}),
        (raw_request("POST", push, b'{"report": {'), {400}),
        (raw_request("POST", push, json.dumps({"report": {}, "signature": "0x00"}).encode()), {400}),
    ]
    return Service(api.port, "POST", push, config.max_body_bytes, harmless, [Path(store.path)], stop)


def start_provider(tmp_path: Path, *, max_connections: int, request_timeout_s: float) -> Service:
    store = Store(tmp_path / "agent.sqlite")
    runner = Runner(RunnerConfig(root=tmp_path / "jobs", meter_interval_s=0.05, meter_gpus=False, kill_grace_s=0.5))
    config = AgentConfig(address=account("provider").address, chain_id=CHAIN_ID, market=MARKET)
    agent = ProviderAgent(config, store, runner, MemoryJobSource(), make_prover("numpy"))
    agent.recover()
    server = ProviderServer(
        agent, "127.0.0.1", 0, max_connections=max_connections, request_timeout_s=request_timeout_s
    ).start()

    def stop() -> None:
        server.stop()
        agent.close(stop_jobs=True, timeout_s=10)
        store.close()

    harmless = [
        (HEALTH, {200}),
        (raw_request("GET", "/jobs/1/status"), {404}),
        (raw_request("POST", "/challenge/open", b"[[["), {400}),
        (raw_request("PUT", f"/jobs/{JOB}/spec", b'{"version": 1}'), {401}),  # no signature
    ]
    return Service(
        server.port,
        "PUT",
        f"/jobs/{JOB}/spec",
        BODY_LIMITS["spec"],
        harmless,
        [tmp_path / "agent.sqlite", tmp_path / "jobs"],
        stop,
        agent,
    )


@pytest.fixture(params=["oracle", "provider"])
def start(request, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Starts the parametrized service with the given limits; stopped when the test ends."""
    started: list[Service] = []

    def start_service(max_connections: int = 64, request_timeout_s: float = 10.0) -> Service:
        starter = start_oracle if request.param == "oracle" else start_provider
        service = starter(tmp_path, max_connections=max_connections, request_timeout_s=request_timeout_s)
        started.append(service)
        return service

    yield start_service
    for service in started:
        service.stop()


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    """Both ends of 500 connections live in this process: 1,000 descriptors and then some."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------- the client side


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def error(self) -> str | None:
        return json.loads(self.body).get("error") if self.headers.get("content-type") == "application/json" else None


def parse_answers(raw: bytes) -> list[Answer]:
    """Every answer in what a connection received, in order."""
    answers = []
    while raw:
        head, found, rest = raw.partition(b"\r\n\r\n")
        assert found, f"an incomplete answer: {raw[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
        }
        length = int(headers["content-length"])
        answers.append(Answer(int(lines[0].split(" ", 2)[1]), headers, rest[:length]))
        raw = rest[length:]
    return answers


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT_S)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """The next answer on a connection the server keeps open."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT_S)
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1])  # type: ignore[index]
    [answer] = parse_answers(head + await asyncio.wait_for(reader.readexactly(length), ANSWER_TIMEOUT_S))
    return answer


async def exchange(port: int, payload: bytes) -> list[Answer]:
    """One connection: send, read until the server closes, every answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return parse_answers(await read_all(reader))
    finally:
        writer.close()


def healthy(service: Service) -> bool:
    answers = asyncio.run(exchange(service.port, HEALTH))
    return [a.status for a in answers] == [200]


def assert_json_refusal(answer: Answer, status: int, error: str) -> None:
    assert (answer.status, answer.error) == (status, error), answer
    assert answer.headers["content-type"] == "application/json" and json.loads(answer.body)["detail"]


# --------------------------------------------------------------------------- the tests


def test_500_concurrent_connections_are_served_or_refused_with_503(start):
    service = start(max_connections=50)
    before = service.snapshot()
    payloads = [service.harmless[i % len(service.harmless)] for i in range(500)]

    async def flood() -> list[bytes]:
        # Every connection is open before any request is sent: 500 at once, 50 of them admitted.
        connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", service.port) for _ in payloads))
        for (_, writer), (payload, _) in zip(connections, payloads, strict=True):
            writer.write(payload)
        try:
            return await asyncio.gather(*(read_all(reader) for reader, _ in connections))
        finally:
            for _, writer in connections:
                writer.close()

    received = asyncio.run(flood())
    served = refused = 0
    for raw, (payload, statuses) in zip(received, payloads, strict=True):
        answers = parse_answers(raw)
        assert len(answers) == 1, (payload, raw)
        answer = answers[0]
        if answer.status == 503:
            assert_json_refusal(answer, 503, "busy")
            assert answer.headers["retry-after"] == "1" and answer.headers["connection"] == "close"
            refused += 1
        else:
            assert answer.status in statuses, (payload, answer)
            served += 1
    assert served >= 1 and refused >= 1, (served, refused)
    assert eventually(lambda: healthy(service), timeout_s=10)  # once the refused have gone, all is served
    assert service.snapshot() == before


def test_stalled_and_trickled_requests_get_408_and_free_their_connections(start):
    service = start(max_connections=16, request_timeout_s=3.0)
    before = service.snapshot()
    body_head = raw_request(service.body_method, service.body_path, length=100, close=False)

    async def slow_clients() -> tuple[list[list[Answer]], float, list[int], int]:
        async def stalled(payload: bytes) -> list[Answer]:
            return await exchange(service.port, payload)  # the rest never comes

        async def trickled() -> list[Answer]:
            reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
            writer.write(body_head)

            async def drip() -> None:
                for _ in range(100):  # 100 bytes at 5 a second: 20 s, were the deadline reset by each
                    await asyncio.sleep(0.2)
                    writer.write(b" ")

            dripping = asyncio.ensure_future(drip())
            try:
                return parse_answers(await read_all(reader))
            finally:
                dripping.cancel()
                writer.close()

        started = time.monotonic()
        clients = [asyncio.ensure_future(stalled(body_head + b"{")) for _ in range(5)]  # a body that stops
        clients += [asyncio.ensure_future(stalled(body_head.split(b"\r\n", 2)[0] + b"\r\nHost: te")) for _ in range(5)]
        clients += [asyncio.ensure_future(trickled()) for _ in range(5)]
        await asyncio.sleep(0.1)  # the 15 connect first
        # Meanwhile the 16th connection is served.
        health = [a.status for a in await exchange(service.port, HEALTH)]
        pending_when_served = sum(not client.done() for client in clients)
        answers = await asyncio.gather(*clients)
        return answers, time.monotonic() - started, health, pending_when_served

    answers, elapsed, health, pending_when_served = asyncio.run(slow_clients())
    for received in answers:
        assert len(received) == 1  # and then the server closed the connection (read_all returned)
        assert_json_refusal(received[0], 408, "request_timeout")
        assert received[0].headers["connection"] == "close"
    assert health == [200] and pending_when_served == 15  # served while all 15 stalled
    assert elapsed < 15, elapsed  # the trickle did not push the deadline out (that would take 20 s)

    async def full_house() -> list[list[Answer]]:
        return await asyncio.gather(*(exchange(service.port, HEALTH) for _ in range(16)))

    # The 15 stalled connections are gone: 16 at once are all admitted.
    assert eventually(lambda: all([a.status for a in r] == [200] for r in asyncio.run(full_house())), timeout_s=10)
    assert service.snapshot() == before


def test_a_burst_of_oversized_bodies_is_refused_from_the_header(start):
    service = start(max_connections=64)
    before = service.snapshot()
    limit = service.body_limit

    async def burst() -> list[list[Answer]]:
        async def headers_only() -> list[Answer]:
            # Only the head is sent: the 413 cannot have waited for the body.
            reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
            try:
                writer.write(raw_request(service.body_method, service.body_path, length=10**9, close=False))
                return [await read_answer(reader)]
            finally:
                writer.close()

        oversized = raw_request(service.body_method, service.body_path, b"[" * (4 * limit + 1))
        sends = [headers_only() for _ in range(20)] + [exchange(service.port, oversized) for _ in range(20)]
        return await asyncio.gather(*sends)

    for answers in asyncio.run(burst()):
        assert len(answers) == 1
        assert_json_refusal(answers[0], 413, "body_too_large")
        assert str(limit) in json.loads(answers[0].body)["detail"]
    assert healthy(service)
    assert service.snapshot() == before


def test_bytes_past_the_content_length_are_read_as_the_next_request(start):
    service = start()
    before = service.snapshot()
    payload = raw_request(service.body_method, service.body_path, b"{}", close=False) + b"{} and more\r\n\r\n"
    first, second = asyncio.run(exchange(service.port, payload))
    assert 400 <= first.status < 500 and first.error  # the route's own refusal of "{}"
    assert_json_refusal(second, 400, "bad_request")
    assert healthy(service)
    assert service.snapshot() == before


def test_oracles_queued_for_the_prover_never_hold_up_health(tmp_path):
    """45 turn requests wait in the agent at once (more than anyio's default 40 worker threads),
    then a challenge computes: /health is answered while they wait, each turn request holding a
    worker thread of its own; then each gets its turn."""
    service = start_provider(tmp_path, max_connections=64, request_timeout_s=10.0)
    assert service.agent is not None
    challenges = service.agent.challenges
    challenges.turn_valid_s = 60.0  # the turn taken first is held until its challenge comes
    challenges.max_wait_s = 60.0
    try:
        [granted] = asyncio.run(exchange(service.port, raw_request("POST", "/challenge/turn", b"")))
        waiting: list[list[Answer]] = []

        def oracle() -> None:
            waiting.append(asyncio.run(exchange(service.port, raw_request("POST", "/challenge/turn", b""))))

        threads = [threading.Thread(target=oracle) for _ in range(45)]
        for thread in threads:
            thread.start()
        assert eventually(lambda: len(challenges._queue) == 45, timeout_s=20)
        assert healthy(service)
        assert not waiting  # every turn request was still waiting when /health answered
        challenges.turn_valid_s = 0.05  # the turns granted from now on lapse unused at once
        challenge = raw_request("POST", "/challenge", Verifier().issue(CPU_DEV).to_bytes(), close=True)
        payload = challenge.replace(
            b"\r\n\r\n", f"\r\n{TURN_HEADER}: {json.loads(granted.body)['turn']}\r\n\r\n".encode(), 1
        )
        assert [a.status for a in asyncio.run(exchange(service.port, payload))] == [200]
        for thread in threads:
            thread.join(ANSWER_TIMEOUT_S)
        assert [[a.status for a in answers] for answers in waiting] == [[200]] * 45
    finally:
        service.stop()


def test_stop_is_prompt_while_requests_wait_and_frees_the_port(tmp_path):
    """Turn requests wait in the agent when the server stops: stop() returns within its grace
    period (not the requests' minute), their connections are closed, the port stops listening."""
    service = start_provider(tmp_path, max_connections=64, request_timeout_s=10.0)
    assert service.agent is not None
    challenges = service.agent.challenges
    challenges.turn_valid_s = challenges.max_wait_s = 60.0
    ended: list[list[Answer]] = []

    def oracle() -> None:
        try:
            ended.append(asyncio.run(exchange(service.port, raw_request("POST", "/challenge/turn", b""))))
        except ConnectionError:  # closed with a reset rather than an end: no answer either way
            ended.append([])

    try:
        asyncio.run(exchange(service.port, raw_request("POST", "/challenge/turn", b"")))  # held from now on
        threads = [threading.Thread(target=oracle) for _ in range(3)]
        for thread in threads:
            thread.start()
        assert eventually(lambda: len(challenges._queue) == 3, timeout_s=20)
        started = time.monotonic()
    finally:
        service.stop()
    assert time.monotonic() - started < 15  # the grace period is 1 s; the waits would last 60 s
    for thread in threads:
        thread.join(ANSWER_TIMEOUT_S)
    assert ended == [[], [], []]  # closed without an answer
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", service.port), timeout=5).close()
