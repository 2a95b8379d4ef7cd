"""The provider's chain watcher: takes the jobs it can run at its price, and notes their end.

    watcher = JobWatcher(market, "watcher.sqlite", store, start_block=deployment.block,
                         policy=WatchPolicy(min_job_value=10**18))
    watcher.poll_once()                  # or watcher.run(stop_event) in a thread
    watcher.close()

Built on gpumarket.chain.EventFollower (its own SQLite file: the cursor, and the jobs this
watcher took). `market` must carry the provider's key as its signer; the provider is the
signer's address.

On JobCreated the job is offered to `consider`: it re-reads the job (`get_job`: the event may
be old, another provider may have taken it) and the provider's on-chain record, and accepts
when the job is OPEN, open to anyone or directed to this provider, of its GPU class, within
its GPU count, at a max price >= its price, before the accept deadline (the latest block's
time), worth the policy's minimum job value, and when its GPUs are free: the chain's
`gpus_in_use` (what the provider's running jobs hold, whoever accepted them and across
restarts) plus the job's count within the registered gpu_count (the contract's own rule) and
the policy's max_gpus. A job that does not fit is skipped (BUSY) rather than sent to revert.
A revert (taken first by a competitor, stake too low, no longer verified...) is logged with
the contract's reason and skipped: the event is done, never retried blindly. Node failures
propagate, so the follower offers the event again.

On JobAccepted naming this provider (its own accept, or one made before a crash cut the
bookkeeping short) the job is recorded in the agent's Store (`store.accept`), so the client's
signed spec is then accepted, and held. On JobSettled/JobExpired of a held job it is released,
and the Store marks an ``accepted`` job that never got its spec ``lost``.

The held jobs live in the follower's database and change inside the event's transaction, so a
restart resumes from the cursor without re-accepting or forgetting a job.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.events import JobAccepted, JobCreated, JobExpired, JobSettled, MarketEvent
from gpumarket.chain.follower import EventFollower, FollowerConfig
from gpumarket.chain.market import Market
from gpumarket.chain.models import ZERO_ADDRESS, JobState
from gpumarket.provider.store import Store

__all__ = ["Decision", "JobWatcher", "WatchPolicy"]

log = logging.getLogger(__name__)

WATCHED_EVENTS = frozenset({JobCreated.name, JobAccepted.name, JobSettled.name, JobExpired.name})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watcher_jobs (
    job_id TEXT PRIMARY KEY,          -- uint256 as decimal text
    gpu_count INTEGER NOT NULL,
    accepted_block INTEGER NOT NULL,
    ended_block INTEGER               -- NULL while the job holds its GPUs
);
"""


@dataclass(frozen=True)
class WatchPolicy:
    """Limits beyond the chain's rules. ``max_gpus``: GPUs the provider's running jobs may use
    together (None: the registered gpu_count, the chain's own limit); ``min_job_value``: least
    price * gpu_count * max_duration (payment-token units) worth taking."""

    max_gpus: int | None = None
    min_job_value: int = 0

    def __post_init__(self) -> None:
        if (self.max_gpus is not None and self.max_gpus < 1) or self.min_job_value < 0:
            raise ValueError(f"invalid watch policy {self}")


class Decision(StrEnum):
    """What `consider` did with a job."""

    ACCEPTED = "accepted"
    NOT_OPEN = "not_open"
    DIRECTED_ELSEWHERE = "directed_elsewhere"
    OTHER_CLASS = "other_class"
    TOO_MANY_GPUS = "too_many_gpus"
    PRICE_TOO_LOW = "price_too_low"
    DEADLINE_PASSED = "deadline_passed"
    BUSY = "busy"
    TOO_SMALL = "too_small"
    NOT_REGISTERED = "not_registered"
    REVERTED = "reverted"


class JobWatcher:
    """Follows `market`'s job events for the provider `market.sender`; see the module docstring."""

    def __init__(
        self,
        market: Market,
        db_path: str | Path,
        store: Store,
        *,
        start_block: int = 0,
        policy: WatchPolicy | None = None,
        config: FollowerConfig | None = None,
    ) -> None:
        if market.sender is None:
            raise ValueError("the watcher's market needs the provider's key as its signer")
        self.market = market
        self.provider: str = market.sender
        self.store = store
        self.policy = policy or WatchPolicy()
        follower_config = replace(config or FollowerConfig(), events=WATCHED_EVENTS)
        self.follower = EventFollower(
            market.w3,
            market.address,
            db_path,
            self._on_event,
            start_block=start_block,
            config=follower_config,
            stream="provider-watcher",
        )
        self._db_path = Path(db_path)
        with closing(sqlite3.connect(self._db_path, timeout=30.0)) as db:
            db.executescript(_SCHEMA)
        self.decisions: dict[int, Decision] = {}  # the latest decision per job, for status and tests
        self._decisions_lock = threading.Lock()

    def close(self) -> None:
        self.follower.close()

    def poll_once(self) -> int:
        """Handle every confirmed new event; returns how many were handled."""
        return self.follower.poll_once()

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set (raises what EventFollower.run raises)."""
        self.follower.run(stop)

    def held_jobs(self) -> dict[int, int]:
        """Jobs accepted and not ended yet: job id -> gpu_count."""
        with closing(sqlite3.connect(self._db_path, timeout=30.0)) as db:  # WAL: reads beside the follower
            return self._held(db)

    # ------------------------------------------------------------------ events

    def _on_event(self, event: MarketEvent, db: sqlite3.Connection) -> None:
        if isinstance(event, JobCreated):
            self._decide(event.job_id, self.consider(event.job_id, db))
        elif isinstance(event, JobAccepted):
            if event.provider == self.provider:
                self._record_accepted(event.job_id, event.meta.block_number, db)
        elif isinstance(event, (JobSettled, JobExpired)):
            self._record_ended(event, db)

    def _decide(self, job_id: int, decision: Decision) -> None:
        with self._decisions_lock:
            self.decisions[job_id] = decision

    def consider(self, job_id: int, db: sqlite3.Connection) -> Decision:
        """Check the job against the chain and the policy, and accept it if it fits."""
        job = self.market.get_job(job_id)
        if job.state != JobState.OPEN:
            return Decision.NOT_OPEN
        if job.provider not in (ZERO_ADDRESS, self.provider):
            return Decision.DIRECTED_ELSEWHERE
        record = self.market.providers(self.provider)
        if not record.registered:
            return Decision.NOT_REGISTERED
        if job.gpu_class != record.gpu_class:
            return Decision.OTHER_CLASS
        if job.gpu_count > record.gpu_count:
            return Decision.TOO_MANY_GPUS
        if job.max_price_per_gpu_second < record.price_per_gpu_second:
            return Decision.PRICE_TOO_LOW
        if job.accept_deadline < self.market.block_timestamp():
            return Decision.DEADLINE_PASSED
        if record.price_per_gpu_second * job.gpu_count * job.max_duration < self.policy.min_job_value:
            return Decision.TOO_SMALL
        # The chain counts the GPUs of every running job of this provider, so the count survives a
        # lost or restarted watcher database; accept_job reverts past the registered count.
        in_use = self.market.gpus_in_use(self.provider)
        capacity = record.gpu_count if self.policy.max_gpus is None else min(record.gpu_count, self.policy.max_gpus)
        if in_use + job.gpu_count > capacity:
            log.info("job %d: %d of %d GPUs in use, not taking %d more", job_id, in_use, capacity, job.gpu_count)
            return Decision.BUSY
        try:
            result = self.market.accept_job(job_id)
        except ContractRevert as error:
            log.warning("job %d: accept reverted (%s); skipped", job_id, error.reason or "no reason")
            return Decision.REVERTED
        log.info("job %d: accepted at %d per GPU-second (%d GPUs)", job_id, record.price_per_gpu_second, job.gpu_count)
        self._record_accepted(job_id, result.block_number, db)
        return Decision.ACCEPTED

    @staticmethod
    def _held(db: sqlite3.Connection) -> dict[int, int]:
        rows = db.execute("SELECT job_id, gpu_count FROM watcher_jobs WHERE ended_block IS NULL").fetchall()
        return {int(job_id): int(count) for job_id, count in rows}

    def _record_accepted(self, job_id: int, block: int, db: sqlite3.Connection) -> None:
        job = self.market.get_job(job_id)
        if job.provider != self.provider:
            return
        # The agent's store first: if the event's transaction then fails, the event comes
        # again and both writes are idempotent.
        self.store.accept(job_id, job.client, job.spec_hash)
        db.execute(
            "INSERT OR IGNORE INTO watcher_jobs (job_id, gpu_count, accepted_block) VALUES (?, ?, ?)",
            (str(job_id), job.gpu_count, block),
        )
        if job.state.terminal:  # it ended before this event was handled (a late catch-up)
            self._end(job_id, block, _ended(job.state.name), db)
        else:
            self._decide(job_id, Decision.ACCEPTED)

    def _record_ended(self, event: JobSettled | JobExpired, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT 1 FROM watcher_jobs WHERE job_id = ?", (str(event.job_id),)).fetchone()
        if row is None:
            return  # not one of this provider's jobs
        ending = event.outcome.name if isinstance(event, JobSettled) else JobState.EXPIRED.name
        self._end(event.job_id, event.meta.block_number, _ended(ending), db)

    def _end(self, job_id: int, block: int, detail: str, db: sqlite3.Connection) -> None:
        db.execute(
            "UPDATE watcher_jobs SET ended_block = ? WHERE job_id = ? AND ended_block IS NULL", (block, str(job_id))
        )
        self.store.end_on_chain(job_id, detail)
        log.info("job %d: ended on chain", job_id)


def _ended(state_name: str) -> str:
    return f"{state_name.lower()} on chain before its spec arrived"
