"""The oracle's HTTP API: a Starlette app served by uvicorn (:mod:`gpumarket.web.server`), JSON in
and out.

Routes::

    GET  /health                                       status ("ok", or "degraded" when a part of the
                                                       service reports trouble: the job loop behind),
                                                       epoch, address, counts, each part's report
    GET  /metrics                                      Prometheus exposition (prometheus-client)
    GET  /reports/job/<job_id>                         our signed report (404 not_decided)
    GET  /reports/hardware/<provider>/<claim_version>/<valid_until>
                                                       likewise for a hardware decision
    GET  /challenges/job/<job_id>                      the challenges we ran against the job's provider:
                                                       {"challenges": [{"kind", "at", "measured_gops",
                                                       "required_gops", "verdict"}]} (none: an empty list)
    POST /signatures/job/<job_id>                      a peer pushes its signature: 202
    POST /signatures/hardware/<provider>/<claim_version>/<valid_until>
    POST /batches/job                                  our signature of a batch root over our own
                                                       decisions for the listed jobs: 200, 409 when
                                                       not (gpumarket.oracle.batches)

The report and push bodies are documented in :mod:`gpumarket.oracle.wire`. A report is served
only from a committed decision; one decided but not yet signed (a crash between the two) is
signed on the spot, to the same bytes it would have had.

Every refusal is the JSON envelope ``{"error": "<code>", "detail": "...", "field": "..."?}`` of
:mod:`gpumarket.web.errors` with a precise status, and the server keeps serving; a refused
request changes nothing stored. The oracle's own codes:

    400 malformed_json | missing_field | unknown_field | invalid_field | key_mismatch
        | invalid_signature
    403 not_a_member          the signature recovers to no member of the report's epoch
    404 not_decided
    409 not_decided (push before we decided) | report_mismatch (not our decision)
        | duplicate_signature (a replay: that signer's signature is already stored)
        | unknown_epoch

and the transport's, shared with the provider agent (gpumarket.web.errors has the table):
400 bad_request | invalid_content_length | truncated_body, 404 not_found, 405
method_not_allowed, 408 request_timeout (``request_timeout_s``), 411 length_required, 413
body_too_large (above ``max_body_bytes``, 16 KiB, from Content-Length alone), 415
unsupported_media_type, 431 headers_too_large, 500 internal (logged; never carries key
material), 501 not_implemented, 503 busy (beyond ``max_connections``).

Every answer the app gives is counted in ``gpumarket_oracle_http_requests_total`` by route
template (``unmatched`` when no route matched), and every refusal in
``gpumarket_oracle_http_request_errors_total`` by status and code, the server stack's own (408,
503, broken HTTP: no route saw those) included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Self

from starlette.requests import Request
from starlette.responses import Response

from gpumarket.oracle.batches import BatchRefused, sign_batch
from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.peers import BATCH_ROUTE
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
from gpumarket.oracle.wire import WireError, loads_strict, parse_address, parse_batch_request, parse_push, parse_uint
from gpumarket.signing.batch import MAX_BATCH
from gpumarket.signing.eip712 import Report
from gpumarket.web.errors import HttpError
from gpumarket.web.server import (
    Endpoint,
    ServerLimits,
    WebServer,
    bytes_response,
    in_thread,
    json_app,
    json_response,
    read_body,
)

__all__ = ["ApiConfig", "ApiError", "HealthCheck", "OracleAPI"]

# A part of the service reporting on itself in /health: (healthy, what it reports). Called on
# each request, from a worker thread: it must be cheap.
HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]

logger = logging.getLogger(__name__)

JOB_ROUTE = "/reports/job/{id}"
HARDWARE_ROUTE = "/reports/hardware/{provider}/{claim_version}/{valid_until}"
JOB_PUSH_ROUTE = "/signatures/job/{id}"
CHALLENGES_ROUTE = "/challenges/job/{id}"
HARDWARE_PUSH_ROUTE = "/signatures/hardware/{provider}/{claim_version}/{valid_until}"


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port; read OracleAPI.port after start()
    max_body_bytes: int = 16 * 1024
    request_timeout_s: float = 10.0  # a request's head and body must arrive within this (then 408)
    max_connections: int = 128  # beyond: 503 busy
    keep_alive_s: float = 5.0  # an idle connection is closed after this


class ApiError(HttpError):
    """A refusal with its HTTP status and JSON body."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None, close: bool = False) -> None:
        super().__init__(status, code, detail, field=field, close=close)

    @classmethod
    def from_wire(cls, exc: WireError) -> ApiError:
        return cls(400, exc.code, exc.detail, exc.field)


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
        self._server: WebServer | None = None
        self._checks: dict[str, HealthCheck] = {}
        # Called with each peer's report whose signature was stored (the job loop settles it at once).
        self.on_signature: Callable[[Report], None] | None = None
        self.app = json_app(
            [
                Endpoint("GET", "/health", self._health),
                Endpoint("GET", "/metrics", self._metrics),
                Endpoint("GET", JOB_ROUTE, self._get_job),
                Endpoint("GET", HARDWARE_ROUTE, self._get_hardware),
                Endpoint("GET", CHALLENGES_ROUTE, self._get_challenges),
                Endpoint("POST", JOB_PUSH_ROUTE, self._post_job),
                Endpoint("POST", HARDWARE_PUSH_ROUTE, self._post_hardware),
                Endpoint("POST", BATCH_ROUTE, self._post_batch),
            ],
            observe=self._count,
        )
        self._register_store_gauges()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        limits = ServerLimits(
            max_connections=self.config.max_connections,
            request_timeout_s=self.config.request_timeout_s,
            keep_alive_s=self.config.keep_alive_s,
        )
        self._server = WebServer(
            self.app,
            host=self.config.host,
            port=self.config.port,
            limits=limits,
            name="gpumarket-oracle",
            observe=self._count,
        ).start()
        logger.info("oracle API for %s listening on %s", self.signer.address, self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the API is not started")
        return self._server.port

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the API is not started")
        return self._server.url

    def _count(self, route: str | None, status: int, error: str | None) -> None:
        if route is not None:  # None: refused by the server stack before any route
            self.metrics.requests.inc(route=route, code=str(status))
        if error is not None:
            self.metrics.request_errors.inc(code=str(status), error=error)

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """/health reports ``check()``'s details under ``name``, and "degraded" when it is unhealthy."""
        self._checks[name] = check

    # ---------------------------------------------------------------- routes

    async def _health(self, request: Request) -> Response:
        return json_response(await in_thread(self._health_payload))

    def _health_payload(self) -> dict[str, Any]:
        committee = self.store.current_committee()
        healthy = True
        parts: dict[str, dict[str, Any]] = {}
        for name, check in self._checks.items():
            ok, parts[name] = check()
            healthy &= ok
        return {
            "status": "ok" if healthy else "degraded",
            "address": self.signer.address,
            "chain_id": self.store.domain.chain_id,
            "contract": self.store.domain.verifying_contract,
            "epoch": None if committee is None else committee.epoch,
            "threshold": None if committee is None else committee.threshold,
            "member": None if committee is None else committee.is_member(self.signer.address),
            "schema_version": self.store.schema_version(),
            "counts": asdict(self.store.counts()),
            **parts,
        }

    async def _metrics(self, request: Request) -> Response:
        body, content_type = await in_thread(self.metrics.exposition, request.headers.get("accept"))
        return bytes_response(body, media_type=content_type)

    async def _get_job(self, request: Request) -> Response:
        job_id = _path_uint(request.path_params["id"], 256, "job_id")
        return await in_thread(self._serve_report, "job", job_key(job_id), lambda: self.signer.sign_job(job_id))

    async def _get_challenges(self, request: Request) -> Response:
        job_id = _path_uint(request.path_params["id"], 256, "job_id")
        challenges = await in_thread(self.store.job_challenges, job_id)
        return json_response({"challenges": [challenge.to_json() for challenge in challenges]})

    async def _get_hardware(self, request: Request) -> Response:
        key = _path_hardware(request.path_params)
        return await in_thread(
            self._serve_report, "hardware", hardware_key(*key), lambda: self.signer.sign_hardware(*key)
        )

    def _serve_report(self, kind: ReportKind, key: tuple[str, ...], sign: Callable[[], Any]) -> Response:
        try:
            signed = sign()
        except NotDecided:
            raise ApiError(404, "not_decided", f"this oracle has not decided {kind} {'/'.join(key)}") from None
        self.metrics.signatures_served.inc(kind=kind)
        return json_response(signed.to_json())

    async def _post_job(self, request: Request) -> Response:
        key = job_key(_path_uint(request.path_params["id"], 256, "job_id"))
        return await in_thread(self._accept_signature, "job", key, await self._read_body(request))

    async def _post_hardware(self, request: Request) -> Response:
        key = hardware_key(*_path_hardware(request.path_params))
        return await in_thread(self._accept_signature, "hardware", key, await self._read_body(request))

    async def _post_batch(self, request: Request) -> Response:
        return await in_thread(self._sign_batch, await self._read_body(request))

    def _sign_batch(self, body: bytes) -> Response:
        try:
            epoch, root, job_ids = parse_batch_request(loads_strict(body), MAX_BATCH)
        except WireError as exc:
            raise ApiError.from_wire(exc) from None
        try:
            signature = sign_batch(self.signer, epoch, root, job_ids)
        except BatchRefused as exc:
            raise ApiError(409, exc.code, str(exc)) from None
        return json_response({"signature": "0x" + signature.hex(), "signer": self.signer.address})

    async def _read_body(self, request: Request) -> bytes:
        return await read_body(request, self.config.max_body_bytes, media_type="application/json")

    def _accept_signature(self, kind: ReportKind, key: tuple[str, ...], body: bytes) -> Response:
        try:
            data = loads_strict(body)
        except WireError as exc:
            raise ApiError.from_wire(exc) from None
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
        if self.on_signature is not None:
            self.on_signature(report)
        committee = self.store.committee(report.epoch)
        decision = self.store.decision_for(report)
        held = 0 if decision is None else len(self.store.signatures(decision.digest))
        return json_response(
            {
                "status": "accepted",
                "signer": signer,
                "signatures": held,
                "threshold": None if committee is None else committee.threshold,
            },
            status=202,
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

        def last_settlement() -> list[tuple[dict[str, str], float]]:
            at = store.last_settled_at()
            return [] if at is None else [({}, at)]

        self.metrics.gauge(
            "gpumarket_oracle_last_settlement_timestamp_seconds",
            "When this oracle last saw one of its decided jobs settled on chain (unix seconds).",
            last_settlement,
        )


def _path_uint(text: str, bits: int, field: str) -> int:
    try:
        return parse_uint(text, bits, field)
    except WireError as exc:
        raise ApiError.from_wire(exc) from None


def _path_hardware(params: dict[str, str]) -> tuple[str, int, int]:
    """(provider, claim_version, valid_until) of a hardware path."""
    try:
        return (
            parse_address(params["provider"], "provider"),
            parse_uint(params["claim_version"], 64, "claim_version"),
            parse_uint(params["valid_until"], 64, "valid_until"),
        )
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
