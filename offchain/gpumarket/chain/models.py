"""What the market's view functions return, as typed values (read by `market.Market`).

Addresses are EIP-55 checksummed strings, hashes are bytes, amounts are ints in token
base units, times are unix seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ZERO_ADDRESS", "Job", "JobState", "ProviderRecord", "StakeInfo"]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class JobState(enum.IntEnum):
    """contracts/modules/escrow.vy's states; NONE is "no such job"."""

    NONE = 0
    OPEN = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5
    EXPIRED = 6

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)


@dataclass(frozen=True)
class Job:
    """`get_job(job_id)`: a job unpacked, with its escrow and collateral."""

    job_id: int
    client: str
    provider: str  # ZERO_ADDRESS for an open job nobody has taken yet
    state: JobState
    gpu_class: int
    gpu_count: int
    max_price_per_gpu_second: int
    price_per_gpu_second: int  # 0 until accepted
    max_duration: int
    accept_deadline: int
    started_at: int  # 0 until accepted
    collateral: int
    escrow: int
    spec_hash: bytes

    @property
    def exists(self) -> bool:
        return self.state != JobState.NONE

    @property
    def end_deadline(self) -> int:
        """started_at + max_duration: when a running job's paid time is up (0 if not started)."""
        return self.started_at + self.max_duration if self.started_at else 0


@dataclass(frozen=True)
class ProviderRecord:
    """`providers(address)`: a provider's claim and standing; gpu_count 0 = not registered.
    claim_version counts changes of class or count (a hardware report names the version it
    measured); recent_failures counts failed jobs in the window opened at
    failure_window_start (the registry's FAILURE_WINDOW long)."""

    address: str
    gpu_class: int
    gpu_count: int
    claim_version: int
    price_per_gpu_second: int
    endpoint: str
    verified_until: int
    recent_failures: int
    failure_window_start: int
    jailed: bool

    @property
    def registered(self) -> bool:
        return self.gpu_count != 0


@dataclass(frozen=True)
class StakeInfo:
    """`stake_of(address)`: free, locked (collateral) and unbonding stake."""

    free: int
    locked: int
    unbonding: int
    release_at: int
