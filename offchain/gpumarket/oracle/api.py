"""The oracle's HTTP API (standard library ThreadingHTTPServer, JSON in and out).

Routes::

    GET  /health                                       status, epoch, address, counts
    GET  /metrics                                      Prometheus text format
    GET  /reports/job/<job_id>                         our signed report (404 not_decided)
    GET  /reports/hardware/<provider>/<claim_version>/<valid_until>
                                                       likewise for a hardware decision
    POST /signatures/job/<job_id>                      a peer pushes its signature: 202
    POST /signatures/hardware/<provider>/<claim_version>/<valid_until>

The report and push bodies are documented in :mod:`gpumarket.oracle.wire`. A report is served
only from a committed decision; one decided but not yet signed (a crash between the two) is
signed on the spot, to the same bytes it would have had.

Every refusal is a JSON body ``{"error": "<code>", "detail": "...", "field": "..."?}`` with a
precise status, and the server keeps serving; a refused request changes nothing stored:

    400 malformed_json | missing_field | unknown_field | invalid_field | key_mismatch
        | invalid_signature | invalid_content_length | truncated_body | bad_request
    403 not_a_member          the signature recovers to no member of the report's epoch
    404 not_found | not_decided
    405 method_not_allowed
    408 request_timeout   (the body stalled longer than request_timeout_s)
    409 not_decided (push before we decided) | report_mismatch (not our decision)
        | duplicate_signature (a replay: that signer's signature is already stored)
        | unknown_epoch
    411 length_required   413 body_too_large   415 unsupported_media_type
    500 internal          (logged; never carries key material)

Bodies above ``max_body_bytes`` (16 KiB) are refused from the Content-Length header alone,
without reading them; the connection is then closed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from gpumarket.oracle.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import (
    AddResult,
    DecisionStore,
    InvalidSignature,
    NotAMember,
    NotDecided,
    ReportKind,
    ReportMismatch,
    UnknownEpoch,
    hardware_key,
    job_key,
    report_key,
)
from gpumarket.oracle.wire import WireError, loads_strict, parse_address, parse_push, parse_uint

__all__ = ["ApiConfig", "ApiError", "OracleAPI"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port; read OracleAPI.port after start()
    max_body_bytes: int = 16 * 1024
    request_timeout_s: float = 10.0  # per socket read: a stalled client frees its thread


class ApiError(Exception):
    """A refusal with its HTTP status and JSON body."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None, close: bool = False) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.close = close  # the body was not read: the connection cannot be reused
        super().__init__(f"{status} {code}: {detail}")

    @classmethod
    def from_wire(cls, exc: WireError) -> ApiError:
        return cls(400, exc.code, exc.detail, exc.field)

    def to_json(self) -> dict[str, str]:
        body = {"error": self.code, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def _json_response(status: int, payload: Any) -> _Response:
    return _Response(status, json.dumps(payload, separators=(",", ":")).encode())


Handler = Callable[["_RequestHandler", "re.Match[str]"], _Response]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    label: str  # the metrics label: the route's template, never the raw path
    handler: Handler


_SEGMENT = r"([^/]+)"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: OracleAPI


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def version_string(self) -> str:
        return "gpumarket-oracle"

    def do_GET(self) -> None:
        self.server.api._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.api._dispatch(self, "POST")

    def do_PUT(self) -> None:
        self.server.api._dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.api._dispatch(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.api._dispatch(self, "PATCH")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, header too large, unknown method) as JSON too.
        error = {400: "bad_request", 414: "uri_too_long", 431: "headers_too_large", 501: "not_implemented"}.get(
            code, HTTPStatus(code).phrase.lower().replace(" ", "_")
        )
        self.server.api.metrics.request_errors.inc(code=str(code), error=error)
        self.close_connection = True
        self.server.api._send(
            self,
            _Response(
                code, json.dumps({"error": error, "detail": message or HTTPStatus(code).phrase}).encode(), close=True
            ),
        )

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class OracleAPI:
    """Serves one oracle's store over HTTP; ``start()`` in a thread, ``stop()`` to end."""

    def __init__(
        self,
        store: DecisionStore,
        signer: OracleSigner,
        metrics: OracleMetrics | None = None,
        config: ApiConfig = ApiConfig(),
    ) -> None:
        self.store = store
        self.signer = signer
        self.metrics = metrics or signer.metrics
        self.config = config
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes = [
            _Route("GET", re.compile(r"/health"), "/health", self._health),
            _Route("GET", re.compile(r"/metrics"), "/metrics", self._metrics),
            _Route("GET", re.compile(rf"/reports/job/{_SEGMENT}"), "/reports/job/{id}", self._get_job),
            _Route(
                "GET",
                re.compile(rf"/reports/hardware/{_SEGMENT}/{_SEGMENT}/{_SEGMENT}"),
                "/reports/hardware/{provider}/{claim_version}/{valid_until}",
                self._get_hardware,
            ),
            _Route("POST", re.compile(rf"/signatures/job/{_SEGMENT}"), "/signatures/job/{id}", self._post_job),
            _Route(
                "POST",
                re.compile(rf"/signatures/hardware/{_SEGMENT}/{_SEGMENT}/{_SEGMENT}"),
                "/signatures/hardware/{provider}/{claim_version}/{valid_until}",
                self._post_hardware,
            ),
        ]
        self._register_store_gauges()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> OracleAPI:
        handler = type("OracleRequestHandler", (_RequestHandler,), {"timeout": self.config.request_timeout_s})
        server = _Server((self.config.host, self.config.port), handler)
        server.api = self
        self._server = server
        # A short poll interval: stop() returns within it.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="oracle-api", daemon=True
        )
        self._thread.start()
        logger.info("oracle API for %s listening on %s", self.signer.address, self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OracleAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the API is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, request: _RequestHandler, method: str) -> None:
        label = "unmatched"
        try:
            path = urlsplit(request.path).path
            route, match = self._route(method, path)
            label = route.label
            response = route.handler(request, match)
        except ApiError as exc:
            self.metrics.request_errors.inc(code=str(exc.status), error=exc.code)
            logger.info("%s %s -> %d %s: %s", method, label, exc.status, exc.code, exc.detail)
            response = _Response(exc.status, json.dumps(exc.to_json()).encode(), close=exc.close)
            if exc.status == 405:
                allowed = ", ".join(sorted({r.method for r in self._routes if r.pattern.fullmatch(path)}))
                response = _Response(response.status, response.body, close=exc.close, headers=(("Allow", allowed),))
        except Exception:  # one bad request must not stop the server
            logger.exception("%s %s: internal error", method, label)
            self.metrics.request_errors.inc(code="500", error="internal")
            response = _json_response(500, {"error": "internal", "detail": "internal error; see the oracle's log"})
        self.metrics.requests.inc(route=label, code=str(response.status))
        self._send(request, response)

    def _route(self, method: str, path: str) -> tuple[_Route, re.Match[str]]:
        path_matched = False
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, match
            path_matched = True
        if path_matched:
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed on this path")
        raise ApiError(404, "not_found", "no such route")

    def _send(self, request: _RequestHandler, response: _Response) -> None:
        if response.close:
            request.close_connection = True
        try:
            request.send_response(response.status)
            request.send_header("Content-Type", response.content_type)
            request.send_header("Content-Length", str(len(response.body)))
            request.send_header("Cache-Control", "no-store")
            for name, value in response.headers:
                request.send_header(name, value)
            if response.close:
                request.send_header("Connection", "close")
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("client went away before the response was written")

    def _read_json(self, request: _RequestHandler) -> Any:
        headers = request.headers
        if headers.get("Transfer-Encoding"):
            raise ApiError(411, "length_required", "chunked bodies are not accepted; send Content-Length", close=True)
        length_text = headers.get("Content-Length")
        if length_text is None:
            raise ApiError(411, "length_required", "a Content-Length header is required", close=True)
        length_text = length_text.strip()
        # isdigit() alone accepts digits int() refuses (superscripts): ASCII digits only.
        if not (length_text.isascii() and length_text.isdigit()):
            raise ApiError(400, "invalid_content_length", "Content-Length is not a non-negative integer", close=True)
        length = int(length_text)
        if length > self.config.max_body_bytes:
            raise ApiError(
                413, "body_too_large", f"{length} bytes > the limit of {self.config.max_body_bytes}", close=True
            )
        content_type = headers.get("Content-Type")
        if content_type is not None and content_type.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "unsupported_media_type", "send application/json", close=True)
        try:
            body = request.rfile.read(length)
        except TimeoutError:
            raise ApiError(408, "request_timeout", "the body did not arrive in time", close=True) from None
        if len(body) != length:
            raise ApiError(400, "truncated_body", f"got {len(body)} of {length} bytes", close=True)
        try:
            return loads_strict(body)
        except WireError as exc:
            raise ApiError.from_wire(exc) from None

    # ---------------------------------------------------------------- routes

    def _health(self, request: _RequestHandler, match: re.Match[str]) -> _Response:
        committee = self.store.current_committee()
        return _json_response(
            200,
            {
                "status": "ok",
                "address": self.signer.address,
                "chain_id": self.store.domain.chain_id,
                "contract": self.store.domain.verifying_contract,
                "epoch": None if committee is None else committee.epoch,
                "threshold": None if committee is None else committee.threshold,
                "member": None if committee is None else committee.is_member(self.signer.address),
                "schema_version": self.store.schema_version(),
                "counts": asdict(self.store.counts()),
            },
        )

    def _metrics(self, request: _RequestHandler, match: re.Match[str]) -> _Response:
        return _Response(200, self.metrics.render().encode(), content_type=METRICS_CONTENT_TYPE)

    def _get_job(self, request: _RequestHandler, match: re.Match[str]) -> _Response:
        job_id = _path_uint(match.group(1), 256, "job_id")
        return self._serve_report("job", job_key(job_id), lambda: self.signer.sign_job(job_id))

    def _get_hardware(self, request: _RequestHandler, match: re.Match[str]) -> _Response:
        key = _path_hardware(match)
        return self._serve_report("hardware", hardware_key(*key), lambda: self.signer.sign_hardware(*key))

    def _serve_report(self, kind: ReportKind, key: tuple[str, ...], sign: Callable[[], Any]) -> _Response:
        try:
            signed = sign()
        except NotDecided:
            raise ApiError(404, "not_decided", f"this oracle has not decided {kind} {'/'.join(key)}") from None
        self.metrics.signatures_served.inc(kind=kind)
        return _json_response(200, signed.to_json())

    def _post_job(self, request: _RequestHandler, match: re.Match[str]) -> _Response:
        key = job_key(_path_uint(match.group(1), 256, "job_id"))
        return self._accept_signature(request, "job", key)

    def _post_hardware(self, request: _RequestHandler, match: re.Match[str]) -> _Response:
        return self._accept_signature(request, "hardware", hardware_key(*_path_hardware(match)))

    def _accept_signature(self, request: _RequestHandler, kind: ReportKind, key: tuple[str, ...]) -> _Response:
        data = self._read_json(request)
        try:
            report, signature = parse_push(kind, data)
        except WireError as exc:
            self.metrics.peer_signatures.inc(source="push", result="malformed")
            raise ApiError.from_wire(exc) from None
        if report_key(report) != (kind, key):
            self.metrics.peer_signatures.inc(source="push", result="key_mismatch")
            raise ApiError(
                400,
                "key_mismatch",
                f"the report is for {kind} {'/'.join(report_key(report)[1])}, the URL names {'/'.join(key)}",
                "report",
            )
        try:
            result, signer = self.store.add_peer_signature(report, signature, source="push")
        except (NotDecided, ReportMismatch, InvalidSignature, UnknownEpoch, NotAMember) as exc:
            error = _refusal(exc)
            self.metrics.peer_signatures.inc(source="push", result=error.code)
            raise error from None
        if result is AddResult.DUPLICATE:
            self.metrics.peer_signatures.inc(source="push", result="duplicate")
            raise ApiError(409, "duplicate_signature", f"a signature by {signer} is already stored for this report")
        self.metrics.peer_signatures.inc(source="push", result="accepted")
        committee = self.store.committee(report.epoch)
        decision = self.store.decision_for(report)
        held = 0 if decision is None else len(self.store.signatures(decision.digest))
        return _json_response(
            202,
            {
                "status": "accepted",
                "signer": signer,
                "signatures": held,
                "threshold": None if committee is None else committee.threshold,
            },
        )

    # ---------------------------------------------------------------- metrics from the store

    def _register_store_gauges(self) -> None:
        if self.metrics.has("gpumarket_oracle_stored_decisions"):
            return  # another API over the same metrics registered them already
        store = self.store

        def decisions() -> list[tuple[dict[str, str], float]]:
            counts = store.counts()
            return [({"kind": "job"}, counts.job_decisions), ({"kind": "hardware"}, counts.hardware_decisions)]

        def signatures() -> list[tuple[dict[str, str], float]]:
            counts = store.counts()
            return [
                ({"origin": "self"}, counts.signatures - counts.peer_signatures),
                ({"origin": "peer"}, counts.peer_signatures),
            ]

        def epoch() -> list[tuple[dict[str, str], float]]:
            committee = store.current_committee()
            return [({}, 0 if committee is None else committee.epoch)]

        self.metrics.gauge("gpumarket_oracle_stored_decisions", "Decisions in the store.", decisions)
        self.metrics.gauge("gpumarket_oracle_stored_signatures", "Verified signatures in the store.", signatures)
        self.metrics.gauge(
            "gpumarket_oracle_settled_jobs", "Jobs known settled on chain.", lambda: [({}, store.counts().settled_jobs)]
        )
        self.metrics.gauge("gpumarket_oracle_epoch", "Highest committee epoch recorded.", epoch)


def _path_uint(text: str, bits: int, field: str) -> int:
    try:
        return parse_uint(text, bits, field)
    except WireError as exc:
        raise ApiError.from_wire(exc) from None


def _path_hardware(match: re.Match[str]) -> tuple[str, int, int]:
    """(provider, claim_version, valid_until) of a hardware path."""
    try:
        return (parse_address(match.group(1), "provider"), parse_uint(match.group(2), 64, "claim_version"),
                parse_uint(match.group(3), 64, "valid_until"))
    except WireError as exc:
        raise ApiError.from_wire(exc) from None


def _refusal(exc: Exception) -> ApiError:
    if isinstance(exc, NotDecided):
        return ApiError(409, "not_decided", f"{exc}; push again after it decides")
    if isinstance(exc, ReportMismatch):
        return ApiError(409, "report_mismatch", str(exc), "report")
    if isinstance(exc, InvalidSignature):
        return ApiError(400, "invalid_signature", str(exc), "signature")
    if isinstance(exc, UnknownEpoch):
        return ApiError(409, "unknown_epoch", str(exc), "report.epoch")
    if isinstance(exc, NotAMember):
        return ApiError(403, "not_a_member", str(exc), "signature")
    raise AssertionError(f"unmapped refusal {type(exc).__name__}")
