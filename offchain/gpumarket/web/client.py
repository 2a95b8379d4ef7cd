"""The one HTTP client of the off-chain services, on httpx: the client's ProviderApi, the oracle's
peers, its hardware challenges and job loop, and the image registries all send through WebClient.

    with WebClient("http://127.0.0.1:8700", timeouts=Timeouts(connect_s=2, read_s=5)) as web:
        answer = web.request("GET", "/jobs/7/status")   # -> Answer (status, headers, body), whatever the status
        answer.expect_ok()                              # -> the body of a 2xx answer; Refused otherwise
        answer.json()

One policy for every caller:

- **Timeouts**: to connect, for each read and each write, for a free connection of the pool
  (:class:`Timeouts`); and, per request, an optional ``deadline`` (on ``time.monotonic()``) for the
  whole exchange: every wait in it (connect, TLS, each write, each read) ends by then, however
  slowly the far end drips its bytes.
- **Pooling**: one connection pool per WebClient, reused by its requests (from any thread), closed
  by :meth:`WebClient.close` (or when the WebClient is garbage-collected). ``keepalive=False``: a
  fresh connection for every request, closed after it.
- **A response-size cap**, enforced while the body streams in: a 2xx answer that declares more
  than ``limit`` bytes is refused before any of its body is read, one that sends more is refused
  at the first chunk over (:class:`TooLarge`). The body of any other answer is read up to
  ``max_error_bytes`` and cut there: its status says what happened, its error document is small.
- **Bytes as sent**: ``Accept-Encoding: identity`` is asked (as http.client did) and a compressed
  2xx answer refused, so the cap counts the bytes kept, and no decompression bomb gets in.
- **No proxies**: ``trust_env=False``, so ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
  ``NO_PROXY`` and ``.netrc`` are ignored. The services talk to the addresses they were given (on
  chain, in their config) directly: a proxy from the environment must not see or steer the oracle's
  traffic with its peers or a provider's agent. TLS trusts the system's store
  (``ssl.create_default_context``), as the clients did before.
- **Redirects** are not followed: a 3xx is an answer like any other. A caller that follows them
  does so itself, under its own rules, each hop a request under these caps (the registry client:
  same origin only). (httpx's own following would read every redirect's body whole, uncapped.)
- **Errors**: :class:`Unreachable` when there is no usable answer (refused, reset, timed out:
  :class:`TimedOut`, not HTTP, over the cap: :class:`TooLarge`); an error answer is an
  :class:`Answer` whose :meth:`Answer.refusal` is :class:`Refused`, the JSON error envelope
  ``{"error": code, "detail": text, "field": name}`` parsed (an answer that is no envelope gets code
  ``http_error`` and a detail that quotes it). All derive from :class:`WebError`; callers map them
  onto their own errors (ProviderUnreachable / ProviderRefused, PeerError, ...).
"""

from __future__ import annotations

import functools
import json
import ssl
import time
import weakref
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import httpcore
import httpx

__all__ = [
    "MAX_ERROR_BYTES",
    "MAX_RESPONSE_BYTES",
    "Answer",
    "Refused",
    "TimedOut",
    "Timeouts",
    "TooLarge",
    "Unreachable",
    "WebClient",
    "WebError",
    "error_envelope",
]

MAX_RESPONSE_BYTES: Final = 1024 * 1024
MAX_ERROR_BYTES: Final = 64 * 1024
# An idle pooled connection is closed after this long: well under the servers' own keep-alive
# (uvicorn's 5 s), so that a server never closes one just as a request goes out on it.
KEEPALIVE_S: Final = 3.0
USER_AGENT: Final = "gpumarket"
_QUOTED_BYTES: Final = 200  # of an error answer that is no envelope, quoted in its detail


# ---------------------------------------------------------------------- errors


class WebError(Exception):
    """A request to ``url`` got no usable answer, or an error answer."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(f"{url}: {message}")


class Unreachable(WebError):
    """No usable answer: no connection, a reset, a timeout, bytes that are not HTTP, an answer over
    the size cap. ``reason`` names the cause (e.g. ``ConnectionRefusedError: [Errno 111] ...``)."""

    def __init__(self, url: str, reason: str) -> None:
        self.reason = reason
        super().__init__(url, reason)


class TimedOut(Unreachable):
    """A connect, read, write or pool wait ran out, or the request's deadline passed."""


class TooLarge(Unreachable):
    """The answer is larger than the request's cap (refused without reading it all)."""


class Refused(WebError):
    """An error answer: ``status``, and its envelope's ``code``, ``detail`` and ``field``."""

    def __init__(self, url: str, status: int, code: str, detail: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        super().__init__(url, f"refused ({status} {code}): {detail}")


def error_envelope(body: bytes) -> tuple[str, str, str | None] | None:
    """``(code, detail, field)`` of a JSON error envelope ``{"error", "detail", "field"?}``; None
    when ``body`` is no such document (``error`` must be a non-empty string)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(code := document.get("error"), str) or not code:
        return None
    detail, field = document.get("detail", ""), document.get("field")
    return code, detail if isinstance(detail, str) else json.dumps(detail), field if isinstance(field, str) else None


# ---------------------------------------------------------------------- answers and timeouts


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, its body read whole (within the caps)."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)

    def refusal(self) -> Refused:
        """This answer as a refusal, its error envelope parsed (code ``http_error`` when it has none)."""
        envelope = error_envelope(self.body)
        if envelope is not None:
            return Refused(self.url, self.status, *envelope)
        text = self.body[:_QUOTED_BYTES].decode("utf-8", "replace")
        return Refused(self.url, self.status, "http_error", f"HTTP {self.status}, not a JSON error document: {text!r}")

    def expect_ok(self) -> bytes:
        """The body of a 2xx answer; :class:`Refused` for any other."""
        if not self.ok:
            raise self.refusal()
        return self.body


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect, to wait for each read and each write (default: ``read_s``), and for a
    free connection of the pool (default: ``connect_s``)."""

    connect_s: float = 5.0
    read_s: float = 30.0
    write_s: float | None = None
    pool_s: float | None = None

    def __post_init__(self) -> None:
        given = (self.connect_s, self.read_s, self.write_s, self.pool_s)
        if not all(value is None or value > 0 for value in given):
            raise ValueError("timeouts must be positive")

    def for_httpx(self, left_s: float | None = None) -> httpx.Timeout:
        """These timeouts for httpx; ``left_s``: what is left of the request's deadline, which cuts
        the wait for a pooled connection (every other wait is cut at its socket: _DeadlineBackend)."""
        pool = self.connect_s if self.pool_s is None else self.pool_s
        write = self.read_s if self.write_s is None else self.write_s
        return httpx.Timeout(
            connect=self.connect_s, read=self.read_s, write=write, pool=pool if left_s is None else min(pool, left_s)
        )


# ---------------------------------------------------------------------- the deadline, at the sockets

# The deadline of the request this thread is sending (sync httpx does all of a request's socket
# work on the caller's thread, so the pool's shared connections see each request's own deadline).
_DEADLINE: ContextVar[float | None] = ContextVar("gpumarket_web_deadline", default=None)


_EXPIRED: Final = "timed out (the request's deadline passed)"


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the current request's deadline; ``expired`` once it passed."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired(_EXPIRED)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sockets, each wait bounded by the current request's deadline (_DeadlineStream)."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's trust store, built once: a context per client would cost ~15 ms each."""
    return ssl.create_default_context()


class _Transport(httpx.HTTPTransport):
    """httpx's transport over a connection pool on _DeadlineBackend."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(verify=_tls_context(), limits=limits, trust_env=False)
        # httpx takes no network backend for its pool, so the pool is built again with ours (the
        # one just built holds no connection yet); tests/web/test_client.py fails if httpx changes this.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


def _describe(error: BaseException) -> str:
    """The root cause of a transport error, named (``ConnectionRefusedError: ...``, ``TimeoutError: timed out``)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError):
            return f"{type(cause).__name__}: {cause}"
        cause = cause.__cause__ or cause.__context__
    return f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------------- the client


class WebClient:
    """Requests to ``base_url`` (or to absolute URLs), under the module's policy.

    ``max_response_bytes``: the default cap of a 2xx answer (``limit`` per request overrides it);
    ``keepalive``: pool connections (False: one fresh connection per request); ``headers``: sent
    with every request.
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        timeouts: Timeouts | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_error_bytes: int = MAX_ERROR_BYTES,
        keepalive: bool = True,
        max_connections: int = 16,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if max_response_bytes < 0 or max_error_bytes < 0 or max_connections < 1:
            raise ValueError("the caps must not be negative and max_connections must be at least 1")
        self.timeouts = timeouts or Timeouts()
        self.max_response_bytes = max_response_bytes
        self.max_error_bytes = max_error_bytes
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections if keepalive else 0,
            keepalive_expiry=KEEPALIVE_S,
        )
        self._http = httpx.Client(
            base_url=base_url,
            transport=_Transport(limits),
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})},
        )
        # The pool is closed with close(), or when this client is collected (a caller that made
        # one for a single request and let it go leaves no socket open).
        self._finalizer = weakref.finalize(self, self._http.close)

    def __repr__(self) -> str:
        return f"WebClient({str(self._http.base_url)!r})"

    def close(self) -> None:
        """Close the pool's connections; the client is not used after this."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int | None = None,
        timeouts: Timeouts | None = None,
        deadline: float | None = None,
    ) -> Answer:
        """The answer to ``method url`` (relative to the base URL, or absolute), whatever its status;
        :class:`Unreachable` (or :class:`TimedOut`, :class:`TooLarge`) when there is none.

        ``limit``: the cap of a 2xx body (default ``max_response_bytes``); ``deadline``: on
        ``time.monotonic()``, when the whole exchange must be over (see the module docstring).
        """
        cap = self.max_response_bytes if limit is None else limit
        left_s = None if deadline is None else deadline - time.monotonic()
        if left_s is not None and left_s <= 0:
            raise TimedOut(self._absolute(url), _EXPIRED)
        token = _DEADLINE.set(deadline)
        try:
            timeout = (timeouts or self.timeouts).for_httpx(left_s)
            with self._http.stream(method, url, content=content, headers=headers, timeout=timeout) as response:
                return self._read(response, cap)
        except httpx.TimeoutException as error:
            raise TimedOut(self._absolute(url), _describe(error)) from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise Unreachable(self._absolute(url), _describe(error)) from None
        finally:
            _DEADLINE.reset(token)

    def _absolute(self, url: str) -> str:
        """``url`` as sent (on the base URL), for error messages."""
        try:
            return str(self._http.build_request("GET", url).url)
        except (httpx.HTTPError, httpx.InvalidURL):
            return url

    def _read(self, response: httpx.Response, cap: int) -> Answer:
        """The body, read as it streams in, under the caps (see the module docstring)."""
        target, ok = str(response.url), response.is_success
        if ok:
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise Unreachable(target, f"the answer is {encoding}-encoded; identity was asked for")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise TooLarge(target, f"an answer of {declared} bytes exceeds the {cap} byte cap")
        else:
            cap = min(cap, self.max_error_bytes)
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > cap:
                if ok:
                    raise TooLarge(target, f"the answer exceeds the {cap} byte cap")
                del body[cap:]  # an error's document: what fits is enough
                break
        return Answer(target, response.status_code, response.headers, bytes(body))
