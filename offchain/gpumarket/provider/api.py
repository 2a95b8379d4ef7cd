"""The provider agent's HTTP API (standard library ``ThreadingHTTPServer``).

    GET  /health                 liveness and what this agent offers
    POST /challenge/turn         waits for the prover's turn -> {"turn": token, "valid_for_s": s}
    POST /challenge              body: a Challenge (gpumarket.measure.messages) -> a Commitment;
                                 header X-Challenge-Turn: a granted turn (challenges.py)
    POST /challenge/open         body: an OpeningRequest -> an Opening
    PUT  /jobs/<id>/spec         body: the job spec; signed by the job's client -> 202 (200 if already had)
    GET  /jobs/<id>/status       public: state, exit code, result_hash, evidence_hash
    GET  /jobs/<id>/usage        public: the usage record whose keccak-256 is evidence_hash
    GET  /jobs/<id>/result       signed by the job's client -> the result bundle (result.py)

Signed requests carry ``Authorization: GpuMarket <token>`` (auth.py). Every refusal is a JSON
``{"error": code, "detail": why}`` with a precise 4xx status, and the server keeps serving.
Bodies must come with a Content-Length within the route's limit (the message type's own
``MAX_BYTES`` for challenges, the spec's size limit for specs): 411 without one, 413 above it,
before a byte of the body is read. Connections are bounded (503 beyond ``max_connections``) and
each socket read times out, so slow or idle clients cannot pin the agent's threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gpumarket.measure.messages import TURN_HEADER, Challenge, OpeningRequest
from gpumarket.provider.agent import ProviderAgent
from gpumarket.provider.errors import AgentError
from gpumarket.provider.spec import MAX_SPEC_BYTES

__all__ = ["BODY_LIMITS", "ProviderServer"]

log = logging.getLogger(__name__)

BODY_LIMITS = {
    "challenge": Challenge.MAX_BYTES,
    "challenge/open": OpeningRequest.MAX_BYTES,
    "spec": MAX_SPEC_BYTES,
}
_JOB_PATH = re.compile(r"/jobs/([0-9]{1,78})/(spec|status|usage|result)")
_ROUTES: dict[str, set[str]] = {
    "/health": {"GET"}, "/challenge/turn": {"POST"}, "/challenge": {"POST"}, "/challenge/open": {"POST"},
}
_JOB_METHODS = {"spec": {"PUT"}, "status": {"GET"}, "usage": {"GET"}, "result": {"GET"}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], agent: ProviderAgent, max_connections: int, timeout_s: float) -> None:
        self.agent = agent
        self.request_timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"error": "busy", "detail": "too many connections"}).encode()
            with contextlib.suppress(OSError):  # the client may already be gone
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "gpumarket-provider"

    def setup(self) -> None:
        # Per server rather than per class; StreamRequestHandler.setup applies it to the socket.
        self.timeout = self.server.request_timeout_s  # type: ignore[misc]
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def version_string(self) -> str:
        return self.server_version

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (unparseable request line, oversized headers, unknown
        # method): JSON like every other answer, and the connection is closed.
        self.close_connection = True
        self.request_version = self.protocol_version  # an unparsed line reads as HTTP/0.9: no headers
        names = {
            400: "bad_request",
            414: "uri_too_long",
            431: "headers_too_large",
            501: "method_not_allowed",
            505: "bad_http_version",
        }
        body = json.dumps(
            {"error": names.get(code, "bad_request"), "detail": message or explain or "bad request"}
        ).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200:
                self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass

    # Every method goes through one dispatcher so that refusals look the same everywhere.
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        self._body_read = False
        try:
            status, body, headers = self._route(method)
        except AgentError as error:
            status, body, headers = error.status, json.dumps(error.to_json()).encode(), error.headers
            log.info("%s %s -> %d %s", method, self.path.split("?")[0][:200], error.status, error.code)
        except Exception:  # a bug must not take the server down: log it, answer 500, keep serving
            log.exception("%s %s failed", method, self.path[:200])
            status, body, headers = 500, json.dumps({"error": "internal", "detail": "internal error"}).encode(), {}
        self._send(status, body, headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        if not self._body_read and (self.headers.get("Content-Length") or "0").strip() != "0":
            self.close_connection = True  # an unread body (or an unreadable length) would be taken for the next request
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str) -> tuple[int, bytes, dict[str, str]]:
        path = self.path.split("?", 1)[0]
        agent = self.server.agent
        match = _JOB_PATH.fullmatch(path)
        if match:
            allowed = _JOB_METHODS[match.group(2)]
        elif path in _ROUTES:
            allowed = _ROUTES[path]
        else:
            raise AgentError(404, "not_found", f"no route {path[:200]!r}")
        if method not in allowed:
            raise AgentError(
                405,
                "method_not_allowed",
                f"{path} allows {', '.join(sorted(allowed))}",
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        if path == "/health":
            return 200, _json(agent.health()), {}
        if path == "/challenge/turn":
            self._body(0)  # no body: a turn names nothing but its place in the queue
            return 200, _json(agent.request_turn()), {}
        if path == "/challenge":
            body = self._body(BODY_LIMITS["challenge"])
            return 200, agent.answer_challenge(body, self.headers.get(TURN_HEADER)), {}
        if path == "/challenge/open":
            return 200, agent.open_challenge(self._body(BODY_LIMITS["challenge/open"])), {}
        assert match is not None
        job_id, action = int(match.group(1)), match.group(2)
        if job_id >= 2**256:
            raise AgentError(404, "unknown_job", "job ids are uint256")
        authorization = self.headers.get("Authorization")
        if action == "spec":
            record, started = agent.submit_spec(job_id, self._body(BODY_LIMITS["spec"]), authorization)
            return (202 if started else 200), _json({"started": started, "job": agent.public_status(record)}), {}
        if action == "status":
            return 200, _json(agent.public_status(agent.status(job_id))), {}
        if action == "usage":
            return 200, agent.usage(job_id), {}
        return 200, agent.result(job_id, authorization), {}

    def _body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise AgentError(411, "length_required", "send the body with a Content-Length, not chunked")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise AgentError(411, "length_required", "this request needs a body with a Content-Length")
        if not (length_text.isascii() and length_text.isdigit()):  # int() also takes non-ASCII digits
            self.close_connection = True
            raise AgentError(400, "bad_content_length", f"Content-Length {length_text[:40]!r} is not a number")
        length = int(length_text)
        if length > limit:
            raise AgentError(413, "body_too_large", f"the body is {length} bytes; this route accepts at most {limit}")
        try:
            body = self.rfile.read(length)
        except (TimeoutError, ConnectionResetError):
            self.close_connection = True
            raise AgentError(408, "body_timeout", f"the body did not arrive within {self.timeout} s") from None
        self._body_read = True
        if len(body) != length:
            self.close_connection = True
            raise AgentError(400, "truncated_body", f"the body ended after {len(body)} of {length} bytes")
        return body


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class ProviderServer:
    """Serves a ProviderAgent on ``host:port`` (port 0: an ephemeral port; see ``url``)."""

    def __init__(
        self,
        agent: ProviderAgent,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_connections: int = 64,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.agent = agent
        self._server = _Server((host, port), agent, max_connections, request_timeout_s)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host!s}:{self.port}"

    def start(self) -> ProviderServer:
        """Serves in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="provider-api", daemon=True
        )
        self._thread.start()
        log.info("provider API listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serves in this thread until ``stop`` is called from another."""
        log.info("provider API listening on %s", self.url)
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
