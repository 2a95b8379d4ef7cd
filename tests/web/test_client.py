"""gpumarket.web.client against real loopback servers (http.server in a thread, or a bare socket
that accepts and says nothing): timeouts and the deadline, the size cap, pooling, the proxy policy,
the error envelope, redirects, closing."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from gpumarket.web.client import (
    Refused,
    TimedOut,
    Timeouts,
    TooLarge,
    Unreachable,
    WebClient,
    error_envelope,
)

BIG = 64 * 1024 * 1024  # what a hostile server offers to send
CAP = 256 * 1024


class FarEnd(ThreadingHTTPServer):
    """A loopback HTTP/1.1 server: ``routes`` path -> handler function; counts the connections it
    accepted and those that ended, and the body bytes a route managed to write."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Callable[[_Handler], None]] = {}
        self.accepted = 0
        self.ended = 0
        self.written = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that pooling can be seen
    server: FarEnd

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.accepted += 1

    def finish(self) -> None:
        with self.server.lock:
            self.server.ended += 1
        super().finish()

    def _route(self) -> None:
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            send(self, 404, b'{"error": "not_found", "detail": "no such route"}')
        else:
            route(self)

    do_GET = do_POST = _route  # http.server's names for the methods it serves

    def log_message(self, *args: object) -> None:
        pass


def send(handler: _Handler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def flood(declare: bool) -> Callable[[_Handler], None]:
    """A 200 answer of BIG bytes (declared or not), written until the client hangs up."""

    def route(handler: _Handler) -> None:
        handler.send_response(200)
        if declare:
            handler.send_header("Content-Length", str(BIG))
        else:
            handler.send_header("Connection", "close")  # the body ends when the connection does
        handler.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(BIG // len(chunk)):
                handler.wfile.write(chunk)
                with handler.server.lock:
                    handler.server.written += len(chunk)
        except OSError:
            pass
        handler.close_connection = True

    return route


@pytest.fixture
def far() -> Iterator[FarEnd]:
    server = FarEnd()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------------- timeouts


def test_a_server_that_never_answers_times_out_within_bounds(silent: str) -> None:
    with WebClient(silent, timeouts=Timeouts(connect_s=2, read_s=0.3)) as web:
        started = time.monotonic()
        with pytest.raises(TimedOut) as raised:
            web.request("GET", "/health")
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3, elapsed
    assert "timed out" in raised.value.reason and raised.value.url == f"{silent}/health"


def test_the_deadline_bounds_a_whole_exchange_however_the_bytes_drip(far: FarEnd) -> None:
    def drip(handler: _Handler) -> None:  # each byte well within the read timeout, the whole far beyond
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        try:
            for _ in range(100):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    far.routes["/drip"] = drip
    with WebClient(far.url, timeouts=Timeouts(connect_s=2, read_s=5)) as web:
        started = time.monotonic()
        with pytest.raises(TimedOut):
            web.request("GET", "/drip", deadline=time.monotonic() + 1.0)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 4, elapsed  # the drip alone takes 10 s
        with pytest.raises(TimedOut, match="deadline passed") as late:
            web.request("GET", "/drip", deadline=time.monotonic() - 1)  # over before it began
        assert late.value.url == f"{far.url}/drip"
    assert far.accepted == 1  # the second one sent nothing


def test_a_closed_port_is_unreachable_with_its_cause_named() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with WebClient(f"http://127.0.0.1:{port}") as web, pytest.raises(Unreachable) as raised:
        web.request("GET", "/health")
    assert raised.value.reason.startswith("ConnectionRefusedError") and not isinstance(raised.value, TimedOut)


# ---------------------------------------------------------------------- the size cap


@pytest.mark.parametrize("declare", [True, False])
def test_a_huge_body_is_refused_without_being_read(far: FarEnd, declare: bool) -> None:
    far.routes["/huge"] = flood(declare)
    with WebClient(far.url, max_response_bytes=CAP) as web:
        with pytest.raises(TooLarge, match=f"exceeds the {CAP} byte cap"):
            web.request("GET", "/huge")
        assert wait_until(lambda: far.ended == 1)  # the client hung up: the flood stopped
    assert far.written < BIG // 4, far.written


def test_a_body_within_a_requests_own_limit_is_read(far: FarEnd) -> None:
    far.routes["/exact"] = lambda handler: send(handler, 200, b"y" * CAP)
    with WebClient(far.url, max_response_bytes=1024) as web:
        assert web.request("GET", "/exact", limit=CAP).body == b"y" * CAP
        with pytest.raises(TooLarge):
            web.request("GET", "/exact")  # the client's own cap


def test_an_error_answer_is_cut_at_the_error_cap_not_refused(far: FarEnd) -> None:
    far.routes["/big-error"] = lambda handler: send(handler, 500, b"e" * (CAP * 2))
    with WebClient(far.url, max_error_bytes=1000) as web:
        answer = web.request("GET", "/big-error")
    assert answer.status == 500 and answer.body == b"e" * 1000


def test_a_compressed_answer_is_refused(far: FarEnd) -> None:
    far.routes["/gzip"] = lambda handler: send(handler, 200, b"\x1f\x8b not really", {"Content-Encoding": "gzip"})
    with WebClient(far.url) as web, pytest.raises(Unreachable, match="gzip-encoded"):
        web.request("GET", "/gzip")


# ---------------------------------------------------------------------- pooling and closing


def test_requests_reuse_one_pooled_connection(far: FarEnd) -> None:
    far.routes["/ping"] = lambda handler: send(handler, 200, b"pong")
    with WebClient(far.url) as web:
        assert [web.request("GET", "/ping").body for _ in range(3)] == [b"pong"] * 3
        assert far.accepted == 1
    assert wait_until(lambda: far.ended == 1)  # close() closed it


def test_without_keepalive_every_request_has_a_fresh_connection(far: FarEnd) -> None:
    far.routes["/ping"] = lambda handler: send(handler, 200, b"pong")
    with WebClient(far.url, keepalive=False) as web:
        web.request("GET", "/ping")
        assert wait_until(lambda: far.ended == 1)  # closed right after its answer
        web.request("GET", "/ping")
    assert far.accepted == 2


def test_a_client_let_go_closes_its_pool(far: FarEnd) -> None:
    far.routes["/ping"] = lambda handler: send(handler, 200, b"pong")
    assert WebClient(far.url).request("GET", "/ping").body == b"pong"
    gc.collect()
    assert wait_until(lambda: far.ended == 1)


# ---------------------------------------------------------------------- proxies


def test_proxies_from_the_environment_are_ignored(far: FarEnd, monkeypatch: pytest.MonkeyPatch) -> None:
    far.routes["/ping"] = lambda handler: send(handler, 200, b"pong")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with httpx.Client() as trusting, pytest.raises((httpx.ProxyError, httpx.ConnectError)):
        trusting.get(f"{far.url}/ping")  # what the environment would do to a client that trusts it
    with WebClient(far.url) as web:
        assert web.request("GET", "/ping").body == b"pong"
    assert far.accepted == 1  # only ours reached it: directly


# ---------------------------------------------------------------------- the error envelope, redirects


def test_a_json_error_envelope_is_parsed(far: FarEnd) -> None:
    envelope = {"error": "unknown_job", "detail": "no job 7", "field": "job_id"}
    far.routes["/jobs/7/status"] = lambda handler: send(
        handler, 404, json.dumps(envelope).encode(), {"Content-Type": "application/json"}
    )
    with WebClient(far.url) as web:
        answer = web.request("GET", "/jobs/7/status")
    refused = answer.refusal()
    assert (refused.status, refused.code, refused.detail, refused.field) == (404, "unknown_job", "no job 7", "job_id")
    with pytest.raises(Refused) as raised:
        answer.expect_ok()
    assert raised.value.code == "unknown_job" and "404 unknown_job" in str(raised.value)


def test_an_error_that_is_no_envelope_is_a_clear_refusal(far: FarEnd) -> None:
    far.routes["/boom"] = lambda handler: send(handler, 502, b"<html>Bad Gateway</html>")
    with WebClient(far.url) as web:
        refused = web.request("GET", "/boom").refusal()
    assert (refused.status, refused.code) == (502, "http_error")
    assert "not a JSON error document" in refused.detail and "Bad Gateway" in refused.detail


@pytest.mark.parametrize("body", [b"", b"[]", b'{"error": 7}', b'{"error": ""}', b'{"detail": "x"}', b"\xff"])
def test_documents_that_are_no_envelope(body: bytes) -> None:
    assert error_envelope(body) is None


def test_redirects_are_answers_not_followed(far: FarEnd) -> None:
    far.routes["/old"] = lambda handler: send(handler, 307, b"moved", {"Location": "/new"})
    far.routes["/new"] = lambda handler: send(handler, 200, b"here")
    with WebClient(far.url) as web:
        moved = web.request("GET", "/old")
    assert (moved.status, moved.headers["Location"], moved.body) == (307, "/new", b"moved")
    assert moved.refusal().code == "http_error"  # not a 2xx: expect_ok() refuses it


def test_a_base_path_prefixes_every_request(far: FarEnd) -> None:
    far.routes["/agent/health"] = lambda handler: send(handler, 200, b"ok")
    with WebClient(far.url + "/agent/") as web:
        answer = web.request("GET", "/health")
    assert answer.body == b"ok" and answer.url == f"{far.url}/agent/health"


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Timeouts(connect_s=0)
    with pytest.raises(ValueError):
        Timeouts(read_s=1, write_s=-1)
