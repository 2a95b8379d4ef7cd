"""Simulated provider agents: real HTTP, real challenges, no containers (a job is a timer).

One process serves many registered providers, each under its own endpoint prefix
(``<url>/p/<index>``: the endpoint it registers on chain), with exactly the routes the oracles'
job loop and hardware checks call (gpumarket.oracle.jobs, gpumarket.oracle.challenge), answered
as the real agent answers them (gpumarket.provider.api):

    GET  /p/<i>/health                  liveness and the offer (RTT samples of a challenge)
    POST /p/<i>/challenge/turn          a turn at the prover (gpumarket.provider.challenges)
    POST /p/<i>/challenge               Challenge -> Commitment, computed by the real NumpyProver
    POST /p/<i>/challenge/open          OpeningRequest -> Opening
    GET  /p/<i>/jobs/<id>/status        state, started_at, finished_at, result_hash, evidence_hash
    GET  /p/<i>/jobs/<id>/usage         the usage record whose keccak-256 is evidence_hash

and, for the benchmark's own driver only (no oracle calls them):

    POST /sim/start                     {"seconds": s, "jobs": [[job_id, provider_index], ...]}:
                                        those jobs start running now, all at the same instant
    GET  /sim/jobs                      every job's provider, started_at and finished_at
    GET  /sim/stats                     the provers' work: challenges, proving seconds, turn waits
    POST /sim/reset                     those counts from zero again
    GET  /health                        the process is up

**Challenges** are the real ones: the real :class:`gpumarket.provider.challenges.ChallengeDesk`
(turns, size checks, replay checks in the agent's SQLite store) over the real
:class:`gpumarket.measure.provers.NumpyProver`, at the cpu-small class's sizes (``BENCH_CLASS``). The providers share
this machine's cores, so they share ``prover_slots`` desks (provider ``i`` uses desk ``i mod
slots``): one desk proves one challenge at a time, and a challenge waiting for the prover waits
for its turn *before* the oracle's clock starts, as at a real agent. A desk sized for
``gpus_per_provider`` GPUs answers a provider's hardware check (``16 x gpus`` rounds) and a job's
challenges (one GPU: 16 rounds).

**Jobs** are timers. Before ``/sim/start`` names a job its status is 404 ``unknown_job`` (as a
real agent's before the spec arrives); then it is ``running`` from ``started_at`` for
``seconds``, then ``finished`` with exit code 0, a result hash, and the usage record of a run
that took ``seconds`` of wall time (two samples, no CPU, no GPU: nothing ran). Its
``evidence_hash`` is that record's keccak-256, so the oracles' check of the record
(gpumarket.oracle.jobs, ``_finish``) passes and they bill ``floor(seconds)`` GPU-seconds.

    python -m gpumarket.marketbench.agent --providers providers.json --root DIR --port P --ready-file F
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak
from starlette.requests import Request
from starlette.responses import Response

from gpumarket.agentapi.errors import AgentError
from gpumarket.lifecycle import stop_on_signals, write_ready_file
from gpumarket.measure.classes import CPU_SMALL, GpuClass
from gpumarket.measure.messages import TURN_HEADER
from gpumarket.measure.metering import USAGE_VERSION, Sample, UsageRecord, summarize
from gpumarket.measure.provers import NumpyProver, TileProver
from gpumarket.provider.api import BODY_LIMITS, TURN_BODY_MAX_BYTES
from gpumarket.provider.challenges import ChallengeDesk
from gpumarket.provider.store import Store
from gpumarket.web.server import Endpoint, ServerLimits, WebServer, bytes_response, in_thread, json_app, read_body

__all__ = ["SimProvider", "SimulatedAgents", "SimulatedAgentServer", "main", "usage_record"]

log = logging.getLogger(__name__)

# The class every simulated provider registers: its challenges are small enough for thousands
# of them to share this machine's cores (gpumarket.measure.classes, CPU_SMALL).
BENCH_CLASS = CPU_SMALL

START_BODY_MAX_BYTES = 64 * 1024 * 1024  # a job list of 1,000s of ids
# How long a turn request may wait at a desk: the oracle's own bound (its request timeout less a
# margin, sent as max_wait_s) always applies first, so a long queue is waited out, not refused.
TURN_MAX_WAIT_S = 120.0
_NS = 1_000_000_000


@dataclass(frozen=True)
class SimProvider:
    """One registered provider this process answers for: ``<url>/p/<index>`` is its endpoint."""

    index: int
    address: str
    gpus: int

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "address": self.address, "gpus": self.gpus}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SimProvider:
        return cls(int(document["index"]), str(document["address"]), int(document["gpus"]))


def usage_record(job_id: int, started_at: float, seconds: float) -> UsageRecord:
    """The usage record of a simulated job: ``seconds`` of wall time, nothing metered."""
    samples = (
        Sample(t_ns=0, running=True, cpu_ms=0, rss_bytes=0, gpus=()),
        Sample(t_ns=max(1, round(seconds * _NS)), running=False, cpu_ms=0, rss_bytes=0, gpus=()),
    )
    return UsageRecord(
        version=USAGE_VERSION,
        job_id=job_id,
        pid=0,
        gpu_uuids=(),
        interval_ms=max(1, round(seconds * 1000)),
        started_unix_ns=round(started_at * _NS),
        complete=True,
        samples=samples,
        summary=summarize(samples, ()),
    )


@dataclass(frozen=True)
class _Job:
    job_id: int
    provider: int
    started_at: float
    seconds: float
    usage: bytes  # canonical JSON
    result_hash: bytes

    @property
    def finished_at(self) -> float:
        return self.started_at + self.seconds


class _Desk:
    """A ChallengeDesk and what it did: challenges answered, seconds proving, turn waits."""

    def __init__(self, desk: ChallengeDesk) -> None:
        self.desk = desk
        self.lock = threading.Lock()
        self.turns = 0
        self.turn_waits: list[float] = []
        self.busy_refusals = 0
        self.challenges = 0
        self.prove_seconds = 0.0
        self.openings = 0


class SimulatedAgents:
    """The agents' state and answers (the HTTP routes call these); see the module docstring."""

    def __init__(
        self,
        providers: Sequence[SimProvider],
        root: Path,
        *,
        prover_slots: int = 1,
        gpu_class: GpuClass = BENCH_CLASS,
        prover: Callable[[], TileProver] = NumpyProver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not providers or prover_slots < 1:
            raise ValueError("at least one provider and one prover slot")
        self.providers = {provider.index: provider for provider in providers}
        self.gpu_class = gpu_class
        self.clock = clock
        root.mkdir(parents=True, exist_ok=True)
        gpus = max(provider.gpus for provider in providers)
        self._desks = [
            _Desk(
                ChallengeDesk(
                    prover(), Store(root / f"desk-{slot}.sqlite"), gpu_class, gpus, max_wait_s=TURN_MAX_WAIT_S
                )
            )
            for slot in range(prover_slots)
        ]
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}

    def count(self, route: str) -> None:
        with self._lock:
            self.requests[route] = self.requests.get(route, 0) + 1

    # ------------------------------------------------------------------ providers

    def provider(self, index: int) -> SimProvider:
        provider = self.providers.get(index)
        if provider is None:
            raise AgentError(404, "not_found", f"no simulated provider {index}")
        return provider

    def _desk(self, index: int) -> _Desk:
        return self._desks[self.provider(index).index % len(self._desks)]

    def health(self, index: int) -> dict[str, Any]:
        provider = self.provider(index)
        with self._lock:
            busy = sum(
                1
                for job in self._jobs.values()
                if job.provider == index and job.started_at <= self.clock() < job.finished_at
            )
        return {
            "status": "ok",
            "provider": provider.address,
            "gpu_class": self.gpu_class.name,
            "gpus": list(range(provider.gpus)),
            "free_gpus": max(0, provider.gpus - busy),
            "prover": "numpy",
            "runtime": "simulated",
        }

    # ------------------------------------------------------------------ challenges

    def request_turn(self, index: int, max_wait_s: float | None) -> dict[str, Any]:
        desk = self._desk(index)
        asked = time.monotonic()
        try:
            turn = desk.desk.request_turn(max_wait_s)
        except AgentError:
            with desk.lock:
                desk.busy_refusals += 1
            raise
        with desk.lock:
            desk.turns += 1
            desk.turn_waits.append(time.monotonic() - asked)
        return {"turn": turn.token, "valid_for_s": desk.desk.turn_valid_s}

    def answer_challenge(self, index: int, body: bytes, turn: str | None) -> bytes:
        desk = self._desk(index)
        started = time.monotonic()
        answer = desk.desk.answer(body, turn)
        with desk.lock:
            desk.challenges += 1
            desk.prove_seconds += time.monotonic() - started
        return answer

    def open_challenge(self, index: int, body: bytes) -> bytes:
        desk = self._desk(index)
        opening = desk.desk.open(body)
        with desk.lock:
            desk.openings += 1
        return opening

    # ------------------------------------------------------------------ jobs

    def start_jobs(self, jobs: Sequence[tuple[int, int]], seconds: float) -> float:
        """Starts these (job id, provider index) jobs now, all at one instant; that instant."""
        if not seconds > 0:
            raise AgentError(400, "invalid_field", "seconds must be > 0")
        for _, index in jobs:
            self.provider(index)
        now = self.clock()
        started = {
            job_id: _Job(
                job_id,
                index,
                now,
                seconds,
                usage_record(job_id, now, seconds).canonical_json(),
                keccak(text=f"gpumarket marketbench result {job_id}"),
            )
            for job_id, index in jobs
        }
        with self._lock:
            already = sorted(set(started) & set(self._jobs))
            if already:
                raise AgentError(409, "job_exists", f"jobs already started: {already[:8]}")
            self._jobs.update(started)
        return now

    def _job(self, index: int, job_id: int) -> _Job:
        self.provider(index)
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.provider != index:
            raise AgentError(404, "unknown_job", f"job {job_id} is unknown to this agent")
        return job

    def status(self, index: int, job_id: int) -> dict[str, Any]:
        job = self._job(index, job_id)
        finished = self.clock() >= job.finished_at
        return {
            "job_id": job_id,
            "state": "finished" if finished else "running",
            "started_at": job.started_at,
            "finished_at": job.finished_at if finished else None,
            "exit_code": 0 if finished else None,
            "stop_reason": "exited" if finished else None,
            "timed_out": False if finished else None,
            "output_limit_exceeded": False,
            "result_hash": "0x" + job.result_hash.hex() if finished else None,
            "evidence_hash": "0x" + keccak(job.usage).hex() if finished else None,
            "detail": None,
            "reason": None,
            "image": None,
            "runtime": "simulated",
            "pulling": False,
        }

    def usage(self, index: int, job_id: int) -> bytes:
        job = self._job(index, job_id)
        if self.clock() < job.finished_at:
            raise AgentError(409, "not_finished", f"job {job_id} is running")
        return job.usage

    def jobs(self) -> dict[str, Any]:
        with self._lock:
            jobs = list(self._jobs.values())
        return {
            str(job.job_id): {"provider": job.provider, "started_at": job.started_at, "finished_at": job.finished_at}
            for job in jobs
        }

    def reset_stats(self) -> None:
        """Counts from zero again (the benchmark's load measures from here)."""
        for desk in self._desks:
            with desk.lock:
                desk.turns = desk.busy_refusals = desk.challenges = desk.openings = 0
                desk.turn_waits, desk.prove_seconds = [], 0.0
        with self._lock:
            self.requests = {}

    def stats(self) -> dict[str, Any]:
        waits: list[float] = []
        figures = {"turns": 0, "busy_refusals": 0, "challenges": 0, "openings": 0, "prove_seconds": 0.0}
        for desk in self._desks:
            with desk.lock:
                waits += desk.turn_waits
                figures["turns"] += desk.turns
                figures["busy_refusals"] += desk.busy_refusals
                figures["challenges"] += desk.challenges
                figures["openings"] += desk.openings
                figures["prove_seconds"] += desk.prove_seconds
        with self._lock:
            requests = dict(self.requests)
        return {
            **figures,
            "prover_slots": len(self._desks),
            "turn_wait_s": {
                "mean": statistics.fmean(waits) if waits else 0.0,
                "p50": statistics.median(waits) if waits else 0.0,
                "p99": statistics.quantiles(waits, n=100)[98] if len(waits) > 1 else max(waits, default=0.0),
                "max": max(waits, default=0.0),
            },
            "requests": requests,
        }


def _int_param(request: Request, name: str) -> int:
    value = request.path_params[name]
    if isinstance(value, int):
        return value
    if not str(value).isdigit() or len(str(value)) > 78:
        raise AgentError(404, "not_found", f"no route {request.url.path[:200]!r}")
    return int(value)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _turn_wait(body: bytes) -> float | None:
    """A turn request's ``{"max_wait_s": s}`` (None without a body), as the real agent reads it."""
    if not body:
        return None
    try:
        wait = json.loads(body)["max_wait_s"]
    except (ValueError, KeyError, TypeError):
        raise AgentError(400, "invalid_field", 'a turn request\'s body is {"max_wait_s": seconds}') from None
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait < float("inf"):
        raise AgentError(400, "invalid_field", "max_wait_s must be a positive number of seconds")
    return float(wait)


def _start_request(body: bytes) -> tuple[list[tuple[int, int]], float]:
    try:
        document = json.loads(body)
        jobs = [(int(job_id), int(index)) for job_id, index in document["jobs"]]
        seconds = float(document["seconds"])
    except (ValueError, KeyError, TypeError):
        raise AgentError(
            400, "invalid_field", 'the body is {"seconds": s, "jobs": [[job_id, provider], ...]}'
        ) from None
    return jobs, seconds


class _Routes:
    def __init__(self, agents: SimulatedAgents) -> None:
        self.agents = agents

    def endpoints(self) -> list[Endpoint]:
        prefix = "/p/{provider:int}"
        return [
            Endpoint("GET", "/health", self.own_health),
            Endpoint("GET", prefix + "/health", self.health),
            Endpoint("POST", prefix + "/challenge/turn", self.turn),
            Endpoint("POST", prefix + "/challenge", self.challenge),
            Endpoint("POST", prefix + "/challenge/open", self.open),
            Endpoint("GET", prefix + "/jobs/{id}/status", self.status),
            Endpoint("GET", prefix + "/jobs/{id}/usage", self.usage),
            Endpoint("POST", "/sim/start", self.start),
            Endpoint("GET", "/sim/jobs", self.jobs),
            Endpoint("GET", "/sim/stats", self.stats),
            Endpoint("POST", "/sim/reset", self.reset),
        ]

    async def own_health(self, request: Request) -> Response:
        return bytes_response(_json({"status": "ok", "providers": len(self.agents.providers)}))

    async def health(self, request: Request) -> Response:
        self.agents.count("health")
        return bytes_response(_json(self.agents.health(_int_param(request, "provider"))))

    async def turn(self, request: Request) -> Response:
        self.agents.count("turn")
        index = _int_param(request, "provider")
        wait = _turn_wait(await read_body(request, TURN_BODY_MAX_BYTES, required=False))
        return bytes_response(_json(await in_thread(self.agents.request_turn, index, wait)))

    async def challenge(self, request: Request) -> Response:
        self.agents.count("challenge")
        index = _int_param(request, "provider")
        body = await read_body(request, BODY_LIMITS["challenge"])
        turn = request.headers.get(TURN_HEADER)
        return bytes_response(await in_thread(self.agents.answer_challenge, index, body, turn))

    async def open(self, request: Request) -> Response:
        self.agents.count("open")
        index = _int_param(request, "provider")
        body = await read_body(request, BODY_LIMITS["challenge/open"])
        return bytes_response(await in_thread(self.agents.open_challenge, index, body))

    async def status(self, request: Request) -> Response:
        self.agents.count("status")
        index, job_id = _int_param(request, "provider"), _int_param(request, "id")
        return bytes_response(_json(self.agents.status(index, job_id)))

    async def usage(self, request: Request) -> Response:
        self.agents.count("usage")
        index, job_id = _int_param(request, "provider"), _int_param(request, "id")
        return bytes_response(self.agents.usage(index, job_id))

    async def start(self, request: Request) -> Response:
        jobs, seconds = _start_request(await read_body(request, START_BODY_MAX_BYTES))
        started = await in_thread(self.agents.start_jobs, jobs, seconds)
        return bytes_response(_json({"started_at": started, "jobs": len(jobs)}))

    async def jobs(self, request: Request) -> Response:
        return bytes_response(_json(await in_thread(self.agents.jobs)))

    async def stats(self, request: Request) -> Response:
        return bytes_response(_json(self.agents.stats()))

    async def reset(self, request: Request) -> Response:
        self.agents.reset_stats()
        return bytes_response(_json({"reset": True}))


class SimulatedAgentServer:
    """Serves SimulatedAgents on ``host:port``; ``url`` known from construction on."""

    def __init__(
        self, agents: SimulatedAgents, host: str = "127.0.0.1", port: int = 0, *, max_connections: int = 1024
    ) -> None:
        self.agents = agents
        # Every oracle keeps a connection per followed job, and challenges open their own; the
        # other limits are the real agent's (gpumarket.provider.api).
        limits = ServerLimits(max_connections=max_connections, request_timeout_s=30.0)
        self._server = WebServer(
            json_app(_Routes(agents).endpoints()), host=host, port=port, limits=limits, name="gpumarket-simagent"
        )

    @property
    def url(self) -> str:
        return self._server.url

    def endpoint(self, index: int) -> str:
        """Provider ``index``'s endpoint, as it registers it on chain."""
        return f"{self.url}/p/{index}"

    def start(self) -> SimulatedAgentServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def serve_forever(self) -> None:
        self._server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    """The simulated agents' process (the harness starts it): serves until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m gpumarket.marketbench.agent", description=__doc__)
    parser.add_argument("--providers", type=Path, required=True, help="JSON list of {index, address, gpus}")
    parser.add_argument("--root", type=Path, required=True, help="the desks' SQLite stores go here")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prover-slots", type=int, default=1)
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--log-level", default="WARNING")
    options = parser.parse_args(argv)
    logging.basicConfig(level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    providers = [SimProvider.from_json(item) for item in json.loads(options.providers.read_text())]
    agents = SimulatedAgents(providers, options.root, prover_slots=options.prover_slots)
    server = SimulatedAgentServer(agents, port=options.port, max_connections=options.max_connections).start()
    stop = threading.Event()
    stop_on_signals(stop.set)
    if options.ready_file is not None:
        write_ready_file(options.ready_file, {"url": server.url, "pid": os.getpid()})
    log.warning("simulated agents for %d providers at %s", len(providers), server.url)
    while not stop.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":  # pragma: no cover - the harness runs it as a process
    main()
