"""The dashboard's index: every event of the market, written into SQLite by the event follower.

    index = MarketIndex(market, Path("dashboard.sqlite"), start_block=deployment.block)
    index.poll_once()              # or index.run(stop_event) in a thread
    index.cursor                   # the last block indexed: what the pages show
    index.close()

Built on gpumarket.chain.EventFollower (its cursor and exactly-once records live in the same
file), so each event is written once, in the follower's transaction, and a restart resumes where
it stopped. What is written (gpumarket.dashboard.queries reads it):

- ``dashboard_events``: every event, its arguments as JSON (integers exact, bytes as 0x-hex,
  enums by name), keyed by (block, log index), with the job and the account it concerns;
- ``dashboard_jobs``: one row per job, its state as of the last indexed event;
- ``dashboard_blocks``: the timestamp of each block that holds an event;
- ``dashboard_quorums``: the signers of each settlement and hardware report (gpumarket.dashboard.quorum).

Amounts are stored as decimal text: a uint256 does not fit SQLite's 64-bit integers, and SQL's
SUM would add them as floats. Totals are summed in Python (queries.py).

The index can always be rebuilt from the chain, so a chain that changes under it (a reorg deeper
than the confirmation depth, a local node restarted without its state: the follower's
ChainMismatch) does not stop the dashboard: the file is emptied and indexing starts again.
"""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

from gpumarket.chain.errors import ChainMismatch
from gpumarket.chain.events import (
    JobAccepted,
    JobCancelled,
    JobCreated,
    JobExpired,
    JobSettled,
    MarketEvent,
    field_names,
)
from gpumarket.chain.follower import EventFollower, FollowerConfig
from gpumarket.chain.market import Market
from gpumarket.chain.models import ZERO_ADDRESS, JobState
from gpumarket.dashboard.quorum import QUORUM_EVENTS, quorum_signers

__all__ = ["SCHEMA", "MarketIndex", "event_arguments"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS dashboard_events (
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    job_id INTEGER,                   -- the job it concerns, if any
    account TEXT,                     -- the provider (or account) it concerns, if any
    args TEXT NOT NULL,               -- JSON: the event's arguments
    PRIMARY KEY (block, log_index)
);
CREATE INDEX IF NOT EXISTS dashboard_events_by_job ON dashboard_events (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS dashboard_events_by_account ON dashboard_events (account, name);
CREATE INDEX IF NOT EXISTS dashboard_events_by_name ON dashboard_events (name);
CREATE INDEX IF NOT EXISTS dashboard_events_by_tx ON dashboard_events (tx_hash);
CREATE TABLE IF NOT EXISTS dashboard_jobs (
    job_id INTEGER PRIMARY KEY,
    client TEXT NOT NULL,
    provider TEXT NOT NULL,           -- who took it; before that, who it is directed to (zero: anyone)
    state TEXT NOT NULL,              -- a JobState name
    escrow TEXT NOT NULL,             -- payment-token base units, decimal text
    created_block INTEGER NOT NULL,
    updated_block INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_jobs_by_state ON dashboard_jobs (state);
CREATE INDEX IF NOT EXISTS dashboard_jobs_by_provider ON dashboard_jobs (provider);
CREATE INDEX IF NOT EXISTS dashboard_jobs_by_client ON dashboard_jobs (client);
CREATE TABLE IF NOT EXISTS dashboard_blocks (
    number INTEGER PRIMARY KEY,
    timestamp INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dashboard_quorums (
    tx_hash TEXT PRIMARY KEY,
    signers TEXT                      -- JSON list of addresses; NULL: not recoverable (quorum.py)
);
"""

# A job's state after each of its events (a settlement's: its outcome).
_STATE_AFTER = {
    JobCreated: JobState.OPEN,
    JobAccepted: JobState.RUNNING,
    JobCancelled: JobState.CANCELLED,
    JobExpired: JobState.EXPIRED,
}


def event_arguments(event: MarketEvent) -> dict[str, Any]:
    """The event's arguments as JSON values: integers as they are (JSON's are exact), bytes as
    0x-hex, enums by name, tuples as lists."""
    return {name: _json_value(getattr(event, name)) for name in field_names(type(event))}


def _json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value


def _account(event: MarketEvent) -> str | None:
    """The provider (or the account) the event concerns; none for a job open to anyone."""
    for name in ("provider", "account"):
        value = getattr(event, name, None)
        if isinstance(value, str) and value != ZERO_ADDRESS:
            return value
    return None


class MarketIndex:
    """Indexes ``market``'s events into ``db_path``; see the module docstring."""

    STREAM = "dashboard"

    def __init__(
        self, market: Market, db_path: Path, *, start_block: int = 0, config: FollowerConfig | None = None
    ) -> None:
        self.market = market
        self.db_path = Path(db_path)
        self.start_block = start_block
        self.config = config or FollowerConfig()
        self._lock = threading.Lock()  # the follower is replaced when the chain changes under it
        self._follower = self._open()

    def _open(self) -> EventFollower:
        follower = EventFollower(
            self.market.w3,
            self.market.address,
            self.db_path,
            self._on_event,
            start_block=self.start_block,
            config=self.config,
            stream=self.STREAM,
        )
        with closing(sqlite3.connect(self.db_path, timeout=30.0)) as db:  # WAL: the follower set it
            db.executescript(SCHEMA)
        return follower

    def close(self) -> None:
        with self._lock:
            self._follower.close()

    @property
    def cursor(self) -> int:
        """The last block indexed (start_block - 1 before the first)."""
        with self._lock:
            return self._follower.cursor.block

    def poll_once(self) -> int:
        """Index every confirmed block not indexed yet; returns the number of events written."""
        with self._lock:
            follower = self._follower
        try:
            return follower.poll_once()
        except ChainMismatch as error:
            self._rebuild(error)
            return 0

    def run(self, stop: threading.Event) -> None:
        """Index until ``stop`` is set; raises what EventFollower.run raises, but ChainMismatch."""
        while not stop.is_set():
            with self._lock:
                follower = self._follower
            try:
                follower.run(stop)
            except ChainMismatch as error:
                self._rebuild(error)

    def _rebuild(self, error: ChainMismatch) -> None:
        log.warning("the chain changed under the index (%s): indexing again from block %d", error, self.start_block)
        with self._lock:
            self._follower.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
            self._follower = self._open()

    # ------------------------------------------------------------------ the handler

    def _on_event(self, event: MarketEvent, db: sqlite3.Connection) -> None:
        meta = event.meta
        job_id = getattr(event, "job_id", None)
        db.execute(
            "INSERT INTO dashboard_events (block, log_index, tx_hash, name, job_id, account, args)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                meta.block_number,
                meta.log_index,
                meta.tx_hash,
                event.name,
                job_id,
                _account(event),
                json.dumps(event_arguments(event)),
            ),
        )
        self._record_block(meta.block_number, db)
        if isinstance(event, JobCreated):
            db.execute(
                "INSERT INTO dashboard_jobs (job_id, client, provider, state, escrow, created_block, updated_block)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.job_id,
                    event.client,
                    event.provider,
                    JobState.OPEN.name,
                    str(event.escrow),
                    meta.block_number,
                    meta.block_number,
                ),
            )
        elif isinstance(event, JobAccepted):
            self._set_state(event.job_id, JobState.RUNNING, meta.block_number, db, provider=event.provider)
        elif isinstance(event, JobSettled):
            self._set_state(event.job_id, JobState[event.outcome.name], meta.block_number, db)
        elif isinstance(event, (JobCancelled, JobExpired)):
            self._set_state(event.job_id, _STATE_AFTER[type(event)], meta.block_number, db)
        if event.name in QUORUM_EVENTS:
            self._record_quorum(meta.tx_hash, db)

    @staticmethod
    def _set_state(
        job_id: int, state: JobState, block: int, db: sqlite3.Connection, *, provider: str | None = None
    ) -> None:
        db.execute(
            "UPDATE dashboard_jobs SET state = ?, updated_block = ?, provider = coalesce(?, provider) WHERE job_id = ?",
            (state.name, block, provider, job_id),
        )

    def _record_block(self, number: int, db: sqlite3.Connection) -> None:
        if db.execute("SELECT 1 FROM dashboard_blocks WHERE number = ?", (number,)).fetchone():
            return
        timestamp = int(self.market.w3.eth.get_block(number)["timestamp"])
        db.execute("INSERT INTO dashboard_blocks (number, timestamp) VALUES (?, ?)", (number, timestamp))

    def _record_quorum(self, tx_hash: str, db: sqlite3.Connection) -> None:
        if db.execute("SELECT 1 FROM dashboard_quorums WHERE tx_hash = ?", (tx_hash,)).fetchone():
            return
        signers = quorum_signers(self.market, tx_hash)
        db.execute(
            "INSERT INTO dashboard_quorums (tx_hash, signers) VALUES (?, ?)",
            (tx_hash, None if signers is None else json.dumps(list(signers))),
        )
