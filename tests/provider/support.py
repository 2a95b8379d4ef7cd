"""Helpers for the provider agent's tests: accounts, a JobSource double, an HTTP client.

``MemoryJobSource`` is a test double for the chain-backed JobSource that the chain layer
provides (gpumarket.chain, written alongside this package): a dict of OnChainJob.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from gpumarket.agentapi.spec import JobSpec, Limits
from gpumarket.provider.jobsource import JobState, OnChainJob

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def account(label: str) -> LocalAccount:
    """A deterministic test account (its key is derived from ``label``; never a real key)."""
    return Account.from_key(keccak(text=f"gpumarket provider tests: {label}"))


def python_spec(code: str, *, max_seconds: int = 20, max_output_bytes: int = 1 << 20, **fields: Any) -> JobSpec:
    """A spec that runs ``code`` with this interpreter."""
    limits = Limits(
        max_seconds=max_seconds,
        max_output_bytes=max_output_bytes,
        max_memory_bytes=fields.pop("max_memory_bytes", None),
    )
    return JobSpec(command=[sys.executable, "-c", code], limits=limits, **fields)


class MemoryJobSource:
    """Test double of the chain's JobSource: jobs in a dict; ``failing`` makes lookups raise."""

    def __init__(self) -> None:
        self.jobs: dict[int, OnChainJob] = {}
        self.failing = False
        self.lookups = 0

    def put(
        self,
        job_id: int,
        *,
        client: str,
        provider: str,
        spec_hash: bytes,
        state: JobState = JobState.RUNNING,
        gpu_count: int = 1,
    ) -> OnChainJob:
        job = OnChainJob(
            job_id=job_id, client=client, provider=provider, state=state, spec_hash=spec_hash, gpu_count=gpu_count
        )
        self.jobs[job_id] = job
        return job

    def get_job(self, job_id: int) -> OnChainJob | None:
        self.lookups += 1
        if self.failing:
            raise ConnectionError("node unreachable (test)")
        return self.jobs.get(job_id)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str | None:
        data = self.json()
        return data.get("error") if isinstance(data, dict) else None


@dataclass
class Http:
    """A tiny HTTP client over http.client (one connection per request)."""

    host: str
    port: int
    timeout: float = 30.0
    log: list[bytes] = field(default_factory=list)  # every response body, for leak checks

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            self.log.append(data)
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            connection.close()

    def raw(self, payload: bytes, *, half_close: bool = False) -> bytes:
        """Sends raw bytes; returns one response (headers and a Content-Length body), or what
        came before the server closed or 5 s passed."""
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            sock.sendall(payload)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5.0)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
                    head, found, body = answer.partition(b"\r\n\r\n")
                    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if found and match and len(body) >= int(match.group(1)):
                        break
            except TimeoutError:
                pass
        self.log.append(answer)
        return answer

    def healthy(self) -> bool:
        response = self.request("GET", "/health")
        return response.status == 200 and response.json()["status"] == "ok"
