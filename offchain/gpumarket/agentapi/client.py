"""The caller's HTTP side of the provider agent's API (docs/provider-api.md): bounded, typed.

The client and the oracle's job loop both call the agent through it.

    api = ProviderApi("http://127.0.0.1:8700", HttpTimeouts(connect_s=5, read_s=30))
    api.status(7)                     # -> dict (the agent's job status document)
    api.put_spec(7, raw, header)      # -> dict (202/200 answer)
    api.result(7, header)             # -> bytes (the result bundle, size-capped)
    probe_agents(["http://a:8700", "http://b:8700"])   # -> {endpoint: AgentHealth}, asked in parallel

Requests go through gpumarket.web.client (a connection pool per ProviderApi, reused by its
requests, closed by close() or `with`; a response-size cap; environment proxies ignored: the endpoint is on chain,
it is contacted directly). Connection failures, timeouts and oversized answers raise
ProviderUnreachable; an error answer raises ProviderRefused with the provider's code (its JSON
error envelope {"error", "detail"}; `http_error` when it sent none).

`probe_agent` asks an agent's GET /health with short timeouts (PROBE_TIMEOUTS) and never
raises: the answer says whether the agent is up and how many of its GPUs are free now, so a
client does not pick, or pay for, a provider that cannot start its job.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from gpumarket.agentapi.errors import ProviderRefused, ProviderUnreachable
from gpumarket.agentapi.spec import MAX_OUTPUT_BYTES
from gpumarket.web.client import Timeouts, Unreachable, WebClient

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_RESULT_BYTES",
    "PROBE_TIMEOUTS",
    "AgentHealth",
    "HttpTimeouts",
    "ProviderApi",
    "in_parallel",
    "probe_agent",
    "probe_agents",
]

T = TypeVar("T")
R = TypeVar("R")

MAX_JSON_BYTES = 256 * 1024
# base64 of at most MAX_OUTPUT_BYTES of files, plus the manifest.
MAX_RESULT_BYTES = MAX_OUTPUT_BYTES * 4 // 3 + 1024 * 1024


# Seconds to connect and to wait for each read (and write) of an answer: HttpTimeouts(connect_s, read_s).
HttpTimeouts = Timeouts


class ProviderApi:
    """One provider agent's endpoint (http:// or https://); its connections are pooled across
    requests. close() it (or use `with`) when done, or let it go: its pool closes when collected."""

    def __init__(self, endpoint: str, timeouts: HttpTimeouts | None = None) -> None:
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ProviderUnreachable(endpoint, "not an http(s) URL")
        self.endpoint = endpoint.rstrip("/")
        self.timeouts = timeouts or HttpTimeouts()
        self._web = WebClient(
            self.endpoint,
            timeouts=self.timeouts,
            max_response_bytes=MAX_JSON_BYTES,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"ProviderApi({self.endpoint})"

    def close(self) -> None:
        self._web.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        limit: int = MAX_JSON_BYTES,
    ) -> bytes:
        """The body of a 2xx answer; ProviderRefused for any other answer (a redirect is not
        followed), ProviderUnreachable when there is none (or it is over ``limit`` bytes)."""
        all_headers = dict(headers or {})
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        try:
            answer = self._web.request(method, path, content=body, headers=all_headers, limit=limit)
        except Unreachable as error:
            raise ProviderUnreachable(self.endpoint, error.reason) from None
        if not answer.ok:
            refused = answer.refusal()
            raise ProviderRefused(self.endpoint, refused.status, refused.code, refused.detail, refused.field)
        return answer.body

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            document = json.loads(raw)
        except ValueError:
            raise ProviderUnreachable(self.endpoint, "answer is not JSON") from None
        if not isinstance(document, dict):
            raise ProviderUnreachable(self.endpoint, "answer is not a JSON object")
        return document

    def health(self) -> dict[str, Any]:
        return self._json(self.request("GET", "/health"))

    def status(self, job_id: int) -> dict[str, Any]:
        """The agent's status document for the job (ProviderRefused unknown_job before the spec)."""
        return self._json(self.request("GET", f"/jobs/{job_id}/status"))

    def put_spec(self, job_id: int, spec_bytes: bytes, authorization: str) -> dict[str, Any]:
        raw = self.request("PUT", f"/jobs/{job_id}/spec", body=spec_bytes, headers={"Authorization": authorization})
        return self._json(raw)

    def result(self, job_id: int, authorization: str) -> bytes:
        return self.request(
            "GET", f"/jobs/{job_id}/result", headers={"Authorization": authorization}, limit=MAX_RESULT_BYTES
        )


# A health probe must not stall a listing: an agent that needs longer than this is treated as down.
PROBE_TIMEOUTS = HttpTimeouts(connect_s=2.0, read_s=3.0)
MAX_PARALLEL_REQUESTS = 16


def in_parallel(function: Callable[[T], R], items: Iterable[T], *, workers: int = MAX_PARALLEL_REQUESTS) -> list[R]:
    """`function` over `items` on a few threads, results in the items' order (for HTTP requests
    to many agents: each waits on its own timeout, not after the others')."""
    todo = list(items)
    if len(todo) <= 1:
        return [function(item) for item in todo]
    with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="agent-request") as pool:
        return list(pool.map(function, todo))


@dataclass(frozen=True)
class AgentHealth:
    """What a provider's agent said at GET /health (`answered` False: it did not, see `error`).

    `gpus` is how many GPUs the agent assigns to jobs and `free_gpus` how many no job holds now;
    an agent on a CPU machine has no GPUs (`gpus` 0) and runs any number of jobs at once.
    """

    endpoint: str
    answered: bool
    gpus: int = 0
    free_gpus: int = 0
    provider: str | None = None
    error: str | None = None

    def can_run(self, gpu_count: int) -> bool:
        """The agent answers and could start a job of `gpu_count` GPUs now."""
        return self.answered and (self.gpus == 0 or self.free_gpus >= gpu_count)

    def describe(self) -> str:
        if not self.answered:
            return f"agent down ({self.error})"
        if self.gpus == 0:
            return "agent up (CPU machine)"
        return f"agent up, {self.free_gpus} of {self.gpus} GPU(s) free"

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "answered": self.answered,
            "gpus": self.gpus,
            "free_gpus": self.free_gpus,
            "provider": self.provider,
            "error": self.error,
        }


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def probe_agent(endpoint: str, timeouts: HttpTimeouts = PROBE_TIMEOUTS) -> AgentHealth:
    """The agent's health at `endpoint`; never raises (a failure is an AgentHealth that did not answer)."""
    try:
        with ProviderApi(endpoint, timeouts) as api:
            document = api.health()
    except (ProviderUnreachable, ProviderRefused) as error:
        reason = error.reason if isinstance(error, ProviderUnreachable) else f"{error.status} {error.code}"
        return AgentHealth(endpoint, answered=False, error=reason)
    gpus, free = document.get("gpus"), _count(document.get("free_gpus"))
    if document.get("status") != "ok" or not isinstance(gpus, list) or free is None:
        return AgentHealth(endpoint, answered=False, error="its /health answer is not a gpumarket agent's")
    provider = document.get("provider")
    return AgentHealth(
        endpoint,
        answered=True,
        gpus=len(gpus),
        free_gpus=min(free, len(gpus)),
        provider=provider if isinstance(provider, str) else None,
    )


def probe_agents(endpoints: Iterable[str], timeouts: HttpTimeouts = PROBE_TIMEOUTS) -> dict[str, AgentHealth]:
    """Each distinct endpoint's health, asked in parallel."""
    distinct = list(dict.fromkeys(endpoints))
    return dict(zip(distinct, in_parallel(lambda endpoint: probe_agent(endpoint, timeouts), distinct), strict=True))
