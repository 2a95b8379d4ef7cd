"""Test doubles of what the oracle talks to beyond its own process.

- :class:`ContractDouble`, the chain side of settlement: it applies the contract's quorum rules
  (committee.vy _verify_quorum: current epoch, >= threshold, signers strictly ascending, members
  only) and escrow's "a job settles once", so a test sees exactly what the contract would accept.
- :class:`MarketDouble` (and :func:`running_job`): what the job loop reads from the chain.
- :class:`AgentDouble`: a provider agent's public routes over real HTTP on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

from gpumarket.chain.models import Job, JobState
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, JobReport


class Reverted(Exception):
    """What the contract would revert with."""


@dataclass
class ContractDouble:
    domain: Domain
    epoch: int
    members: list[str]
    threshold: int
    settled: dict[int, JobReport] = field(default_factory=dict)
    submissions: list[tuple[JobReport, tuple[bytes, ...]]] = field(default_factory=list)

    def is_settled(self, job_id: int) -> bool:
        return job_id in self.settled

    def submit_settlement(self, report: JobReport, signatures: Sequence[bytes]) -> str:
        self.submissions.append((report, tuple(signatures)))
        if report.epoch != self.epoch:
            raise Reverted("committee: wrong epoch")
        if len(signatures) < self.threshold:
            raise Reverted("committee: not enough signatures")
        previous = 0
        for signature in signatures:
            signer = eip712.recover(self.domain, report, signature)
            if int(signer, 16) <= previous:
                raise Reverted("committee: signers not ascending")
            if signer not in self.members:
                raise Reverted("committee: signer not a member")
            previous = int(signer, 16)
        if report.job_id in self.settled:
            raise Reverted("escrow: job not running")
        self.settled[report.job_id] = report
        return "0x" + f"{len(self.submissions):064x}"


def running_job(job_id: int, provider: str, started_at: int, max_duration: int = 3600) -> Job:
    """A job as the chain holds it once accepted: running since ``started_at`` (cpu-dev, one GPU)."""
    return Job(
        job_id=job_id,
        client=provider,
        provider=provider,
        state=JobState.RUNNING,
        gpu_class=1,
        gpu_count=1,
        max_price_per_gpu_second=1,
        price_per_gpu_second=1,
        max_duration=max_duration,
        accept_deadline=started_at,
        started_at=started_at,
        collateral=1,
        escrow=max_duration,
        spec_hash=b"\x5e" * 32,
    )


@dataclass
class MarketDouble:
    """What JobMonitor reads from the chain for a followed job: the job, its provider's endpoint."""

    jobs: dict[int, Job]
    endpoints: dict[str, str]  # provider address -> its agent's URL

    def get_job(self, job_id: int) -> Job:
        return self.jobs[job_id]

    def providers(self, address: str) -> SimpleNamespace:
        return SimpleNamespace(endpoint=self.endpoints[address])

    def class_floor(self, gpu_class: int) -> int:
        return 1

    def block_timestamp(self) -> int:
        return int(time.time())


@dataclass
class AgentDouble:
    """A provider agent over real HTTP on loopback: the job's public status and /health, as set.

    ``down``: every request is dropped unanswered (the agent unreachable). ``health_gate``: while
    it is clear, /health answers only once it is set (an oracle's challenge that hangs). It counts
    the requests it got and the most it held at once."""

    status: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    health_requests: int = 0
    status_requests: int = 0
    down: bool = False
    health_gate: threading.Event | None = None
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        agent = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    agent.in_flight += 1
                    agent.max_in_flight = max(agent.max_in_flight, agent.in_flight)
                try:
                    self._answer()
                finally:
                    with lock:
                        agent.in_flight -= 1

            def _answer(self) -> None:
                if agent.down:
                    self.close_connection = True  # no answer at all
                elif self.path == "/health":
                    agent.health_requests += 1
                    if agent.health_gate is not None:
                        agent.health_gate.wait(60)
                    self._send(200, agent.health)
                elif self.path.startswith("/jobs/") and self.path.endswith("/status") and agent.status:
                    agent.status_requests += 1
                    self._send(200, agent.status)
                else:
                    self._send(404, {"error": "unknown_job", "detail": "no such job"})

            def _send(self, code: int, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        if self.health_gate is not None:
            self.health_gate.set()
        self.server.shutdown()
        self.server.server_close()

    def report(
        self, job_id: int, image: str, state: str, *, reason: str | None = None, started_at: float | None = None
    ) -> None:
        self.status = {
            "job_id": job_id,
            "state": state,
            "started_at": started_at,
            "finished_at": None,
            "exit_code": None,
            "result_hash": None,
            "evidence_hash": None,
            "runtime": "container",
            "image": image,
            "pulling": state == "spec_received",
            "reason": reason,
            "detail": f"image: {reason}" if reason else None,
        }
