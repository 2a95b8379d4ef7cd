"""The provider agent's HTTP API: a Starlette app served by uvicorn (:mod:`gpumarket.web.server`).

    GET  /health                 liveness and what this agent offers
    POST /challenge/turn         waits for the prover's turn -> {"turn": token, "valid_for_s": s}
    POST /challenge              body: a Challenge (gpumarket.measure.messages) -> a Commitment;
                                 header X-Challenge-Turn: a granted turn (challenges.py)
    POST /challenge/open         body: an OpeningRequest -> an Opening
    PUT  /jobs/<id>/spec         body: the job spec; signed by the job's client -> 202 (200 if already had)
    GET  /jobs/<id>/status       public: state, exit code, result_hash, evidence_hash
    GET  /jobs/<id>/usage        public: the usage record whose keccak-256 is evidence_hash
    GET  /jobs/<id>/result       signed by the job's client -> the result bundle (result.py)

Signed requests carry ``Authorization: GpuMarket <token>`` (auth.py). Every refusal is the JSON
envelope ``{"error": code, "detail": why}`` of :mod:`gpumarket.web.errors` with a precise status,
and the server keeps serving. The agent's own codes are its :class:`AgentError` codes
(docs/provider-api.md lists them); the transport's, shared with the oracle: 400 bad_request |
invalid_content_length | truncated_body, 404 not_found, 405 method_not_allowed, 408
request_timeout, 411 length_required, 413 body_too_large, 431 headers_too_large, 500 internal, 501
not_implemented, 503 busy (beyond ``max_connections``).

Bodies must come with a Content-Length within the route's limit (``BODY_LIMITS``: the message
type's own ``MAX_BYTES`` for challenges, the spec's size limit for specs): 411 without one, 413
above it, before a byte of the body is read. A turn request's body is empty or
``{"max_wait_s": s}``: how long its oracle waits for the answer, which the turn's wait never
exceeds (so a request its oracle gave up on never takes a turn later). Connections are
bounded (503 ``busy`` beyond ``max_connections``), a request must arrive within
``request_timeout_s`` (408), and the agent's work runs on worker threads, one per admitted
request, so a challenge computing for seconds or oracles queued for a turn never hold up
``/health``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Self

from starlette.requests import Request
from starlette.responses import Response

from gpumarket.agentapi.errors import AgentError
from gpumarket.agentapi.spec import MAX_SPEC_BYTES
from gpumarket.measure.messages import TURN_HEADER, Challenge, OpeningRequest
from gpumarket.provider.agent import ProviderAgent
from gpumarket.web.server import Endpoint, ServerLimits, WebServer, bytes_response, in_thread, json_app, read_body

__all__ = ["BODY_LIMITS", "ProviderServer"]

log = logging.getLogger(__name__)

BODY_LIMITS = {
    "challenge": Challenge.MAX_BYTES,
    "challenge/open": OpeningRequest.MAX_BYTES,
    "spec": MAX_SPEC_BYTES,
}
_JOB_ID = re.compile(r"[0-9]{1,78}")


TURN_BODY_MAX_BYTES = 64


def _turn_wait(body: bytes) -> float | None:
    """The ``max_wait_s`` of a turn request's body (``{"max_wait_s": seconds}``), None for no body."""
    if not body:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        raise AgentError(400, "malformed_json", 'a turn request\'s body is JSON: {"max_wait_s": seconds}') from None
    if not isinstance(document, dict) or set(document) != {"max_wait_s"}:
        raise AgentError(400, "invalid_field", "a turn request's body has one field, max_wait_s")
    wait = document["max_wait_s"]
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait < float("inf"):
        raise AgentError(400, "invalid_field", "max_wait_s must be a positive number of seconds")
    return float(wait)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _job_id(request: Request) -> int:
    text = request.path_params["id"]
    if not _JOB_ID.fullmatch(text):
        raise AgentError(404, "not_found", f"no route {request.url.path[:200]!r}")
    job_id = int(text)
    if job_id >= 2**256:
        raise AgentError(404, "unknown_job", "job ids are uint256")
    return job_id


class _Routes:
    """The handlers: each reads what the route needs on the event loop, then asks the agent on a
    worker thread."""

    def __init__(self, agent: ProviderAgent) -> None:
        self.agent = agent

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/health", self.health),
            Endpoint("POST", "/challenge/turn", self.turn),
            Endpoint("POST", "/challenge", self.challenge),
            Endpoint("POST", "/challenge/open", self.open),
            Endpoint("PUT", "/jobs/{id}/spec", self.spec),
            Endpoint("GET", "/jobs/{id}/status", self.status),
            Endpoint("GET", "/jobs/{id}/usage", self.usage),
            Endpoint("GET", "/jobs/{id}/result", self.result),
        ]

    async def health(self, request: Request) -> Response:
        return bytes_response(_json(await in_thread(self.agent.health)))

    async def turn(self, request: Request) -> Response:
        # A turn names nothing but its place in the queue; its optional body says how long the
        # oracle waits for the answer, so a request it gave up on never takes a turn later
        # (holding the prover for nobody while the oracle's next request waits behind it).
        max_wait_s = _turn_wait(await read_body(request, TURN_BODY_MAX_BYTES, required=False))
        return bytes_response(_json(await in_thread(self.agent.request_turn, max_wait_s)))

    async def challenge(self, request: Request) -> Response:
        body = await read_body(request, BODY_LIMITS["challenge"])
        return bytes_response(await in_thread(self.agent.answer_challenge, body, request.headers.get(TURN_HEADER)))

    async def open(self, request: Request) -> Response:
        body = await read_body(request, BODY_LIMITS["challenge/open"])
        return bytes_response(await in_thread(self.agent.open_challenge, body))

    async def spec(self, request: Request) -> Response:
        job_id = _job_id(request)
        body = await read_body(request, BODY_LIMITS["spec"])
        authorization = request.headers.get("authorization")
        started, answer = await in_thread(self._submit_spec, job_id, body, authorization)
        return bytes_response(answer, 202 if started else 200)

    def _submit_spec(self, job_id: int, body: bytes, authorization: str | None) -> tuple[bool, bytes]:
        record, started = self.agent.submit_spec(job_id, body, authorization)
        return started, _json({"started": started, "job": self.agent.public_status(record)})

    async def status(self, request: Request) -> Response:
        job_id = _job_id(request)
        return bytes_response(_json(await in_thread(lambda: self.agent.public_status(self.agent.status(job_id)))))

    async def usage(self, request: Request) -> Response:
        return bytes_response(await in_thread(self.agent.usage, _job_id(request)))

    async def result(self, request: Request) -> Response:
        job_id = _job_id(request)
        return bytes_response(await in_thread(self.agent.result, job_id, request.headers.get("authorization")))


class ProviderServer:
    """Serves a ProviderAgent on ``host:port`` (port 0: an ephemeral port; see ``url``, known
    from construction on)."""

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
        self.app = json_app(_Routes(agent).endpoints())
        limits = ServerLimits(max_connections=max_connections, request_timeout_s=request_timeout_s)
        self._server = WebServer(self.app, host=host, port=port, limits=limits, name="gpumarket-provider")

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Self:
        """Serves in a background thread."""
        self._server.start()
        log.info("provider API listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serves until ``stop`` is called from another thread (a signal handler's, say)."""
        self.start()
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
