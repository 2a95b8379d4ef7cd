"""Where the agent learns a job's on-chain facts: the ``JobSource`` protocol.

The agent needs these facts per job before it runs anything: who the client is (only the client
may send the spec and fetch the result), which provider took it, its state (only a RUNNING job
is run), its spec_hash (the spec must hash to it), its gpu_count (to assign GPUs), and when its
paid time ends (``end_deadline`` = started_at + max_duration, read with the chain's time then:
the agent never runs a job past it). They come from ``GpuMarket.get_job`` (escrow.vy's
``JobView``). Sources:

- ``MarketJobSource``: the chain, through ``gpumarket.chain.market.Market.get_job``.
- ``JsonFileJobSource``: a job table in a JSON file, to run the agent without a chain
  (``gpumarket provider serve-api --jobs-file``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eth_utils.address import to_checksum_address

from gpumarket.chain.models import Job, JobState

__all__ = ["JobSource", "JobState", "JsonFileJobSource", "MarketJobSource", "OnChainJob"]

MAX_JOBS_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class OnChainJob:
    """The facts of one job the agent acts on (a subset of ``GpuMarket.get_job``).

    ``end_deadline``: unix seconds (chain time) when the job's paid time is up, 0 when unknown
    (no cap); ``chain_time``: the chain's time when these facts were read (the block they were
    read at), None for a source without a chain clock (the agent then uses its own)."""

    job_id: int
    client: str
    provider: str
    state: JobState
    spec_hash: bytes
    gpu_count: int = 1
    end_deadline: int = 0
    chain_time: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "client", to_checksum_address(self.client))
        object.__setattr__(self, "provider", to_checksum_address(self.provider))
        object.__setattr__(self, "state", JobState(self.state))
        if len(self.spec_hash) != 32:
            raise ValueError(f"job {self.job_id}: spec_hash must be 32 bytes, got {len(self.spec_hash)}")
        if self.gpu_count < 1:
            raise ValueError(f"job {self.job_id}: gpu_count must be at least 1, got {self.gpu_count}")
        if self.end_deadline < 0:
            raise ValueError(f"job {self.job_id}: end_deadline must be >= 0, got {self.end_deadline}")


class JobSource(Protocol):
    """Reads a job's on-chain facts; None when the chain has no such job."""

    def get_job(self, job_id: int) -> OnChainJob | None: ...


class _ReadsJobs(Protocol):
    w3: Any  # web3.Web3: the block the job is read at, and its timestamp

    def get_job(self, job_id: int, *, block: int) -> Job: ...


class MarketJobSource:
    """The chain's facts: ``market.get_job`` (a ``gpumarket.chain.market.Market``, read-only
    use). Reads the latest block: a job's client and spec_hash never change once it exists,
    and a RUNNING state that a reorg undoes only lets a spec run that was paid for anyway. The
    job and the chain's time are read at one block, so the time left is the chain's own."""

    def __init__(self, market: _ReadsJobs) -> None:
        self._market = market

    def get_job(self, job_id: int) -> OnChainJob | None:
        block = self._market.w3.eth.get_block("latest")
        job = self._market.get_job(job_id, block=int(block["number"]))
        if job.state == JobState.NONE:
            return None
        return OnChainJob(
            job_id=job_id,
            client=job.client,
            provider=job.provider,
            state=job.state,
            spec_hash=job.spec_hash,
            gpu_count=job.gpu_count,
            end_deadline=job.end_deadline,
            chain_time=int(block["timestamp"]),
        )


class JsonFileJobSource:
    """Jobs listed in a JSON file, read again at every lookup (so jobs can be added while the
    agent runs)::

        {"jobs": [{"job_id": 1, "client": "0x...", "provider": "0x...", "state": "RUNNING",
                   "spec_hash": "0x...", "gpu_count": 1, "end_deadline": 1767225600}]}

    ``end_deadline`` (unix seconds, optional: no cap) is compared with this machine's clock.
    It stands in for the chain on a machine without one; nothing checks these facts."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def get_job(self, job_id: int) -> OnChainJob | None:
        for entry in self._entries():
            if entry.get("job_id") == job_id:
                return self._job(entry)
        return None

    def _entries(self) -> list[dict[str, Any]]:
        raw = self.path.read_bytes()
        if len(raw) > MAX_JOBS_FILE_BYTES:
            raise ValueError(f"{self.path}: {len(raw)} bytes, more than {MAX_JOBS_FILE_BYTES}")
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            raise ValueError(f"{self.path}: expected an object with a 'jobs' list")
        return [entry for entry in data["jobs"] if isinstance(entry, dict)]

    @staticmethod
    def _job(entry: dict[str, Any]) -> OnChainJob:
        state = entry["state"]
        spec_hash = entry["spec_hash"]
        return OnChainJob(
            job_id=int(entry["job_id"]),
            client=entry["client"],
            provider=entry["provider"],
            state=JobState[state] if isinstance(state, str) else JobState(state),
            spec_hash=bytes.fromhex(spec_hash.removeprefix("0x")),
            gpu_count=int(entry.get("gpu_count", 1)),
            end_deadline=int(entry.get("end_deadline", 0)),
        )
