"""The server side of the one web stack: a Starlette app served by uvicorn from a background thread,
with the limits that keep a service up under hostile clients.

Both services (the oracle's API, the provider agent's API) build their routes with
:func:`json_app` and serve them with :class:`WebServer`:

- ``WebServer(app, host=..., port=0, limits=ServerLimits(...), name=...)`` binds its socket at
  once, so ``port`` and ``url`` are known before it serves (port 0: an ephemeral port);
  ``start()`` serves from a daemon thread with its own event loop and returns once uvicorn
  accepts; ``stop()`` stops accepting at once, lets requests under way finish for
  ``shutdown_grace_s``, then drops what is left and returns; ``serve_forever()`` serves until
  another thread calls ``stop()``.
- Route handlers are ``async`` (the body is read on the event loop, where a stalled body costs no
  thread) and run the service's blocking work with :func:`in_thread`. The worker-thread pool is as
  large as ``max_connections``, and no more requests than that are admitted, so a request never
  waits for a thread: a challenge computing for seconds, or many waiting for the prover's turn,
  never hold up ``/health``.
- :func:`read_body` reads a body within the route's limit; every refusal, wherever it comes from,
  is the JSON envelope of :mod:`gpumarket.web.errors`.

What the limits (:class:`ServerLimits`) do, as a client sees them:

- **connections**: a connection opened while ``max_connections`` others are open gets 503
  ``busy`` with ``Retry-After: 1`` for its request, and is closed (first come, first served;
  a connection serves one request at a time, so no more requests are in flight than that);
- **slow clients**: a request's head and body must arrive within ``request_timeout_s`` of its
  first byte, or it gets 408 ``request_timeout`` and its connection is closed (trickling a byte
  at a time does not extend it); an idle connection is closed after ``keep_alive_s``;
- **sizes**: a request head over ``max_head_bytes`` (request line and headers) gets 431
  ``headers_too_large``, as do more than ``max_header_fields`` header fields; a body is checked
  against the route's limit from its Content-Length before a byte is read (411 without one where
  a body is required, 413 above the limit; a chunked body is refused with 411), and counted
  again while it is read; a body is framed by its Content-Length, so bytes past it are read as
  the next request (and refused as one, 400 ``bad_request``, when they are not one);
- **broken HTTP** (refused by h11 before any route sees it) gets 400 ``bad_request``, 400
  ``invalid_content_length`` for a Content-Length that is not one decimal number, 400
  ``truncated_body`` when the client ends the connection inside a body, 501 ``not_implemented``
  for a Transfer-Encoding other than chunked. An HTTP/1.1 request without a Host header is such
  a request (h11 requires it).

Where this differs from the standard-library servers it replaced (and the hostile-input tests
were changed for it): an HTTP/1.1 request without a Host header is 400 ``bad_request`` (h11); an
unknown method is 405 ``method_not_allowed`` (h11 takes any token as a method), not 501; an
over-long request line is 431 ``headers_too_large`` (it is part of the head h11 bounds), not 414
``uri_too_long``; the provider's ``bad_content_length`` and ``body_timeout`` are now the shared
``invalid_content_length`` and ``request_timeout``; header names are sent in lower case.

A body refused before it was read is read away while the client still sends it (within the
request timeout), so the client reads its answer instead of a reset: a connection that stays
open is then reused; one that closes (the client asked, or the refusal closes it) is first
half-closed, and up to ``LINGER_BYTES`` more are read. Every answer carries
``Cache-Control: no-store``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
import h11
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from gpumarket.web.errors import (
    BAD_REQUEST,
    BODY_TOO_LARGE,
    BUSY,
    HEADERS_TOO_LARGE,
    INTERNAL,
    INVALID_CONTENT_LENGTH,
    LENGTH_REQUIRED,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    REQUEST_TIMEOUT,
    TRUNCATED_BODY,
    UNSUPPORTED_MEDIA_TYPE,
    HttpError,
    envelope_bytes,
)

__all__ = [
    "UNMATCHED",
    "Endpoint",
    "Observer",
    "ServerLimits",
    "WebServer",
    "bytes_response",
    "error_response",
    "in_thread",
    "json_app",
    "json_response",
    "read_body",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Observer = Callable[[str | None, int, str | None], None]
"""Called once per answer: (route, status, error code or None). ``route`` is the route's path
template, :data:`UNMATCHED` when no route matched, None for a refusal by the server stack
itself (connection limit, timeout, broken HTTP) that no route saw."""

UNMATCHED = "unmatched"

JSON = "application/json"


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 64  # open connections, first come first served; beyond: 503 busy
    request_timeout_s: float = 10.0  # a request's head and body, from its first byte; then 408
    keep_alive_s: float = 5.0  # an idle connection is closed after this
    max_head_bytes: int = 16 * 1024  # request line and headers; beyond: 431
    max_header_fields: int = 100  # beyond: 431
    shutdown_grace_s: float = 1.0  # stop() lets requests under way finish for this long
    backlog: int = 1024  # connections the kernel queues before they are accepted

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if min(self.request_timeout_s, self.keep_alive_s) <= 0 or self.shutdown_grace_s < 0:
            raise ValueError("timeouts must be positive")


# ------------------------------------------------------------------------------------------ responses


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")).encode(), status, headers, media_type=JSON)


def bytes_response(body: bytes, status: int = 200, media_type: str = JSON) -> Response:
    return Response(body, status, media_type=media_type)


def error_response(error: HttpError) -> Response:
    headers = dict(error.headers)
    if error.close:
        headers["Connection"] = "close"
    return Response(envelope_bytes(error.code, error.detail, error.field), error.status, headers, media_type=JSON)


# ------------------------------------------------------------------------------------------ routes

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # a Starlette path template ("/reports/job/{id}"); also the route's name for Observer
    handler: Handler


def json_app(endpoints: Sequence[Endpoint], observe: Observer | None = None) -> Starlette:
    """A Starlette app of these endpoints whose every answer is observed and every refusal (an
    :class:`HttpError` raised by a handler, a route or method that does not exist, a bug) is the
    JSON envelope."""
    report = observe or _ignore

    def answering(endpoint: Endpoint) -> Handler:
        async def answer(request: Request) -> Response:
            code = None
            try:
                response = await endpoint.handler(request)
            except HttpError as error:
                logger.info("%s %s -> %d %s: %s", request.method, endpoint.path, error.status, error.code, error.detail)
                response, code = error_response(error), error.code
            except ClientDisconnect:
                # The server stack has answered already (a body cut short or too slow), or the
                # client is gone: this response goes nowhere.
                return Response(status_code=400)
            except Exception:  # one bad request must not stop the service
                logger.exception("%s %s: internal error", request.method, endpoint.path)
                response = error_response(HttpError(500, INTERNAL, "internal error; see the service's log"))
                code = INTERNAL
            report(endpoint.path, response.status_code, code)
            return response

        return answer

    async def refuse_unrouted(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path[:200]
        if exc.status_code == 405:
            allowed = ", ".join(sorted((exc.headers or {}).get("Allow", "").split(", ")))
            error = HttpError(
                405,
                METHOD_NOT_ALLOWED,
                f"{request.method[:20]} is not allowed on {path}; allowed: {allowed}",
                headers={"Allow": allowed},
            )
        elif exc.status_code == 404:
            error = HttpError(404, NOT_FOUND, f"no route {path!r}")
        else:
            error = HttpError(exc.status_code, BAD_REQUEST, str(exc.detail))
        report(UNMATCHED, error.status, error.code)
        return error_response(error)

    app = Starlette(
        routes=[Route(e.path, answering(e), methods=[e.method]) for e in endpoints],
        exception_handlers={StarletteHTTPException: refuse_unrouted},
    )
    app.router.redirect_slashes = False  # "/health/" is no route, not a redirect
    return app


async def read_body(request: Request, limit: int, *, required: bool = True, media_type: str | None = None) -> bytes:
    """The request's body, at most ``limit`` bytes, refused from its headers before a byte is
    read: 411 ``length_required`` without a Content-Length (when ``required``; otherwise an absent
    body is empty) or for a chunked body, 413 ``body_too_large`` above the limit, 415
    ``unsupported_media_type`` for a Content-Type other than ``media_type`` (when given; an
    absent one is accepted). The server stack has checked that Content-Length is a decimal
    number, and times the body out (408)."""
    if "transfer-encoding" in request.headers:
        raise HttpError(411, LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
    length_text = request.headers.get("content-length")
    if length_text is None:
        if not required:
            return b""
        raise HttpError(411, LENGTH_REQUIRED, "this request needs a body with a Content-Length")
    length = int(length_text)
    if length > limit:
        raise HttpError(413, BODY_TOO_LARGE, f"the body is {length} bytes; this route accepts at most {limit}")
    content_type = request.headers.get("content-type")
    if media_type is not None and content_type is not None and content_type.split(";")[0].strip().lower() != media_type:
        raise HttpError(415, UNSUPPORTED_MEDIA_TYPE, f"send {media_type}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > length:  # h11 frames the body by its length: a second line of defence
            raise HttpError(413, BODY_TOO_LARGE, f"the body runs past its Content-Length of {length}", close=True)
    return bytes(body)


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Runs blocking work (SQLite, signing, a prover) on a worker thread. A server that stops
    abandons it instead of waiting: the thread finishes on its own and its answer is dropped."""
    return await anyio.to_thread.run_sync(function, *args, abandon_on_cancel=True)


def _ignore(route: str | None, status: int, error: str | None) -> None:
    pass


# ------------------------------------------------------------------------------------------ the transport


class _Connection(h11.Connection):
    """h11's connection, keeping the protocol error it last raised (uvicorn only says one happened)."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.last_error = error
            raise


class _Config(uvicorn.Config):
    """uvicorn's config, carrying what the guarded protocol needs."""

    def __init__(self, app: ASGIApp, *, limits: ServerLimits, observe: Observer, **options: Any) -> None:
        self.limits = limits
        self.observe = observe
        super().__init__(app, **options)


class _LingeringTransport:
    """A connection's transport, except that closing it while the client still sends a body
    nobody will read half-closes it instead and reads the rest away, for up to the request
    timeout and ``LINGER_BYTES``: the client reads its answer, not a reset."""

    def __init__(self, transport: asyncio.Transport, protocol: _GuardedH11Protocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self.transport.is_closing()

    def close(self) -> None:
        if self.lingering or self.transport.is_closing() or self.protocol.conn.their_state is not h11.SEND_BODY:
            self.transport.close()
            return
        self.lingering = True
        self.transport.write_eof()  # after the answer: the client sees it, then the end
        self.transport.resume_reading()
        self.protocol.arm("linger")


LINGER_BYTES = 1024 * 1024  # of an unread body, read away before a refused connection is closed


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits of :class:`ServerLimits`: admission (503, 431)
    before the app, one timer per connection (idle: closed; a request not in by its deadline:
    408), the JSON envelope for h11's own refusals, a half-closed client answered, and a refused
    body read away before the connection closes (:class:`_LingeringTransport`)."""

    transport: _LingeringTransport  # type: ignore[assignment]

    def __init__(self, config: _Config, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits
        self.observe = config.observe
        self.parser = _Connection(h11.SERVER, config.h11_max_incomplete_event_size or 16 * 1024)
        self.conn = self.parser
        self.routes = self.app
        self.app = self.admit
        self.timer: asyncio.TimerHandle | None = None
        self.timer_kind: str | None = None  # "idle", "request" or "linger"
        self.body_cut = False
        self.lingered = 0  # bytes read away since the connection began to linger
        self.over_limit = False

    # -------------------------------------------------------------- admission

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.max_connections
        if self.over_limit:  # a connection serves one request at a time: no more in flight than connections
            logger.warning("more than %d connections: refusing a request with 503", limit)
            error = HttpError(
                503,
                BUSY,
                f"the server is at its limit of {limit} connections; retry",
                headers={"Retry-After": "1"},
                close=True,
            )
        elif len(scope["headers"]) > self.limits.max_header_fields:
            error = HttpError(
                431, HEADERS_TOO_LARGE, f"more than {self.limits.max_header_fields} header fields", close=True
            )
        elif _head_bytes(scope) > self.limits.max_head_bytes:
            # h11 bounds only a head that arrives in pieces; one that came in a single read is measured here.
            error = HttpError(
                431, HEADERS_TOO_LARGE, f"the request head exceeds {self.limits.max_head_bytes} bytes", close=True
            )
        else:
            await self.routes(scope, receive, send)
            return
        self.observe(None, error.status, error.code)
        await error_response(error)(scope, receive, send)

    # -------------------------------------------------------------- timers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        # First come, first served: a connection opened while the limit is reached is refused
        # (503, at its first request), however many of the others close meanwhile.
        self.over_limit = len(self.connections) > self.limits.max_connections  # counts this one
        self.arm("idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.lingered += len(data)
            if self.lingered > LINGER_BYTES:
                self.transport.close()
            return
        super().data_received(data)
        self.watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch()

    def watch(self) -> None:
        """Times the request that is coming in: from its first byte to its last; none while the
        app works on it; the idle limit between requests."""
        if self.transport.is_closing():
            if not self.transport.lingering:
                self.disarm()
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
            if self.timer_kind != "request":
                self.arm("request")
        elif state is h11.IDLE:
            if self.timer_kind is None:
                self.arm("idle")
        else:
            self.disarm()

    def arm(self, kind: str) -> None:
        self.disarm()
        delay = self.limits.keep_alive_s if kind == "idle" else self.limits.request_timeout_s  # or lingering
        self.timer = self.loop.call_later(delay, self.expire)
        self.timer_kind = kind

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.timer_kind = None

    def expire(self) -> None:
        kind, self.timer, self.timer_kind = self.timer_kind, None, None
        if kind == "linger" or not self.transport.is_closing():
            if kind == "request" and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                timeout_s = self.limits.request_timeout_s
                self.refuse(408, REQUEST_TIMEOUT, f"the request did not arrive within {timeout_s:g} s")
            else:  # idle, lingering, or still sending a body that has been answered
                self.transport.close()

    # -------------------------------------------------------------- refusals by the transport

    def send_400_response(self, msg: str) -> None:
        error = self.parser.last_error
        reason = (str(error) if error is not None else msg)[:200]
        hint = error.error_status_hint if error is not None else 400
        if self.body_cut:
            self.refuse(400, TRUNCATED_BODY, f"the connection ended inside the body: {reason}")
        elif hint == 431:
            self.refuse(431, HEADERS_TOO_LARGE, f"the request head exceeds {self.limits.max_head_bytes} bytes")
        elif hint == 501:
            self.refuse(501, NOT_IMPLEMENTED, reason)
        elif "Content-Length" in reason:
            self.refuse(400, INVALID_CONTENT_LENGTH, f"{reason}: it must be one non-negative decimal number")
        else:
            self.refuse(400, BAD_REQUEST, f"not an HTTP/1.1 request: {reason}")

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio lets it keep the transport open
        if self.transport.lingering:
            return None  # the client has read its answer and gone: close
        state = self.conn.their_state
        if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
            # Half a request and no more to come: h11 calls it an error, answered as the others.
            self.body_cut = state is h11.SEND_BODY
            self.conn.receive_data(b"")
            self.handle_events()
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a whole request, then a half-close: answer it, then close
            return True
        return None

    def refuse(self, status: int, code: str, detail: str) -> None:
        """Answers with the JSON envelope (if no answer is under way) and closes the connection."""
        body = envelope_bytes(code, detail)
        headers = [
            *self.server_state.default_headers,
            (b"content-type", JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            output = self.conn.send(h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES[status]))
            output = (output or b"") + (self.conn.send(h11.Data(data=body)) or b"")
            output += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            output = b""  # an answer is already under way: closing is all that is left
        if output:
            logger.info("refused at the transport: %d %s: %s", status, code, detail)
            self.observe(None, status, code)  # counted before the client can read the answer
            self.transport.write(output)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's answer, if it comes, goes nowhere
            self.cycle.message_event.set()
        self.transport.close()


def _head_bytes(scope: Scope) -> int:
    """The size of a request's head as sent, near enough: request line and header lines."""
    target = len(scope["raw_path"]) + len(scope["query_string"])
    return len(scope["method"]) + target + 12 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


# ------------------------------------------------------------------------------------------ the server


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


class WebServer:
    """Serves an ASGI app with uvicorn from a daemon thread; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits = ServerLimits(),
        name: str = "gpumarket",
        observe: Observer | None = None,
    ) -> None:
        self.host = host
        self.limits = limits
        self.name = name
        self._socket = _listen(host, port, limits.backlog)
        self.port: int = self._socket.getsockname()[1]
        config = _Config(
            app,
            limits=limits,
            observe=observe or _ignore,
            http=_GuardedH11Protocol,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # no X-Forwarded-For trusted: the services see their peers as they are
            server_header=False,
            headers=[("Server", name), ("Cache-Control", "no-store")],
            timeout_keep_alive=limits.keep_alive_s,
            timeout_graceful_shutdown=limits.shutdown_grace_s,
            h11_max_incomplete_event_size=limits.max_head_bytes,
            backlog=limits.backlog,
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        """Serves from a daemon thread; returns once the server accepts connections."""
        if self._thread is not None or self._stopped:
            raise RuntimeError(f"{self.name}: a server starts once")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start: {self._failure!r}")
            time.sleep(0.005)
        return self

    def serve_forever(self) -> None:
        """Serves until another thread (a signal handler's, say) calls ``stop()``."""
        thread = self._thread or self.start()._thread
        assert thread is not None
        while thread.is_alive():
            thread.join(0.5)  # a timed join lets the main thread run signal handlers

    def stop(self) -> None:
        """Stops accepting, lets requests under way finish for ``shutdown_grace_s``, drops the rest."""
        self._stopped = True
        self._uvicorn.should_exit = True
        if self._thread is None:
            self._socket.close()
            return
        self._thread.join(timeout=self.limits.shutdown_grace_s + 5.0)
        if self._thread.is_alive():
            logger.warning("%s: still stopping after %.0f s", self.name, self.limits.shutdown_grace_s + 5.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - uvicorn exits (SystemExit) when it cannot start
            self._failure = error
            logger.error("%s: the server failed: %r", self.name, error)

    async def _serve(self) -> None:
        # As many worker threads as admitted requests: no request waits for a thread (in_thread).
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.limits.max_connections
        try:
            await self._uvicorn.serve(sockets=[self._socket])
        finally:
            for connection in list(self._uvicorn.server_state.connections):
                connection.transport.abort()  # those that outlived the grace period
