"""Reads of the dashboard's index (gpumarket.dashboard.index writes it), as typed rows.

    reader = IndexReader(Path("dashboard.sqlite"))
    rows, total = reader.jobs(JobFilter(state=JobState.RUNNING), limit=50)
    reader.events(job_id=7)                       # the job's timeline, oldest first
    reader.totals()                               # staked, escrowed, paid, slashed: exact ints

Each call opens its own connection (WAL: readers never wait for the follower's writes) and sees
one consistent snapshot. Amounts come back as Python ints, summed here, never by SQL.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpumarket.chain.models import JobState
from gpumarket.dashboard.quorum import QUORUM_EVENTS

__all__ = ["IndexReader", "IndexedEvent", "JobFilter", "JobRow", "Slash", "Totals"]


@dataclass(frozen=True)
class IndexedEvent:
    """One indexed event: its arguments by name (gpumarket.dashboard.index.event_arguments)."""

    name: str
    block: int
    log_index: int
    tx_hash: str
    timestamp: int
    job_id: int | None
    account: str | None
    args: dict[str, Any]


@dataclass(frozen=True)
class JobRow:
    job_id: int
    client: str
    provider: str
    state: JobState
    escrow: int
    created_block: int
    created_at: int
    updated_block: int


@dataclass(frozen=True)
class JobFilter:
    """Which jobs to list; None matches any."""

    state: JobState | None = None
    provider: str | None = None
    client: str | None = None


@dataclass(frozen=True)
class Slash:
    """A Slashed event and what caused it: a job's failure (``job_id``) or a hardware report
    that found the claim spoofed (``hardware``)."""

    event: IndexedEvent
    job_id: int | None
    hardware: bool


@dataclass(frozen=True)
class Totals:
    """Sums over every indexed event, in base units: ``staked`` is what providers have bonded and
    not withdrawn or lost (free, locked and unbonding together), ``escrowed`` what open and running
    jobs hold, ``paid`` what providers earned, ``fees`` the protocol's share, ``refunded`` what
    settlements returned to clients, ``slashed`` what providers lost."""

    staked: int
    escrowed: int
    paid: int
    fees: int
    refunded: int
    slashed: int


_EVENT_COLUMNS = (
    "e.name, e.block, e.log_index, e.tx_hash, coalesce(b.timestamp, 0), e.job_id, e.account, e.args"
    " FROM dashboard_events e LEFT JOIN dashboard_blocks b ON b.number = e.block"
)
_JOB_COLUMNS = (
    "j.job_id, j.client, j.provider, j.state, j.escrow, j.created_block, coalesce(b.timestamp, 0), j.updated_block"
    " FROM dashboard_jobs j LEFT JOIN dashboard_blocks b ON b.number = j.created_block"
)
_LIVE_STATES = (JobState.OPEN.name, JobState.RUNNING.name)


def _event(row: tuple[Any, ...]) -> IndexedEvent:
    name, block, log_index, tx_hash, timestamp, job_id, account, args = row
    return IndexedEvent(name, block, log_index, tx_hash, timestamp, job_id, account, json.loads(args))


def _job(row: tuple[Any, ...]) -> JobRow:
    job_id, client, provider, state, escrow, created_block, created_at, updated_block = row
    return JobRow(job_id, client, provider, JobState[state], int(escrow), created_block, created_at, updated_block)


class IndexReader:
    """Read-only queries over one index file; see the module docstring."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.db_path, timeout=30.0)) as db:
            db.execute("BEGIN")  # one snapshot for every statement of the call
            try:
                yield db
            finally:
                db.rollback()

    # ------------------------------------------------------------------ jobs

    def jobs(self, where: JobFilter = JobFilter(), *, limit: int = 100, offset: int = 0) -> tuple[list[JobRow], int]:
        """The matching jobs, newest first, and how many match in all."""
        clauses, values = [], []
        for column, value in (
            ("j.state", None if where.state is None else where.state.name),
            ("j.provider", where.provider),
            ("j.client", where.client),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read() as db:
            total = db.execute(f"SELECT count(*) FROM dashboard_jobs j{condition}", values).fetchone()[0]
            rows = db.execute(
                f"SELECT {_JOB_COLUMNS}{condition} ORDER BY j.job_id DESC LIMIT ? OFFSET ?", [*values, limit, offset]
            ).fetchall()
        return [_job(row) for row in rows], int(total)

    def job(self, job_id: int) -> JobRow | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_JOB_COLUMNS} WHERE j.job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def job_states(self) -> dict[JobState, int]:
        """How many jobs are in each state (every state, zeros included but NONE)."""
        with self._read() as db:
            counted = dict(db.execute("SELECT state, count(*) FROM dashboard_jobs GROUP BY state").fetchall())
        return {state: int(counted.get(state.name, 0)) for state in JobState if state is not JobState.NONE}

    # ------------------------------------------------------------------ events

    def events(
        self,
        *,
        job_id: int | None = None,
        account: str | None = None,
        names: Collection[str] | None = None,
        tx_hash: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[IndexedEvent]:
        """The matching events in chain order (or newest first)."""
        clauses, values = [], []
        for column, value in (("e.job_id", job_id), ("e.account", account), ("e.tx_hash", tx_hash)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if names is not None:
            clauses.append(f"e.name IN ({', '.join('?' for _ in names)})")
            values.extend(names)
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if newest_first else "ASC"
        bound = "" if limit is None else f" LIMIT {int(limit)}"
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_EVENT_COLUMNS}{condition} ORDER BY e.block {order}, e.log_index {order}{bound}", values
            ).fetchall()
        return [_event(row) for row in rows]

    def providers(self) -> list[str]:
        """Every provider that ever registered, in the order they first did."""
        with self._read() as db:
            rows = db.execute(
                "SELECT account FROM dashboard_events WHERE name = 'ProviderRegistered'"
                " GROUP BY account ORDER BY min(block), min(log_index)"
            ).fetchall()
        return [str(row[0]) for row in rows]

    def slashes(self, provider: str) -> list[Slash]:
        """The provider's slashes, newest first, each with its cause (an event of the same transaction)."""
        found = []
        for event in self.events(account=provider, names=("Slashed",), newest_first=True):
            causes = self.events(tx_hash=event.tx_hash, names=("JobSettled", "HardwareRejected"))
            job_ids = [cause.job_id for cause in causes if cause.name == "JobSettled"]
            hardware = any(cause.name == "HardwareRejected" for cause in causes)
            found.append(Slash(event, job_ids[0] if job_ids else None, hardware))
        return found

    def quorum(self, tx_hash: str) -> tuple[str, ...] | None:
        """The signers of the report ``tx_hash`` submitted; None when unknown."""
        with self._read() as db:
            row = db.execute("SELECT signers FROM dashboard_quorums WHERE tx_hash = ?", (tx_hash,)).fetchone()
        return None if row is None or row[0] is None else tuple(json.loads(row[0]))

    def signed_by(self, signer: str, *, names: Collection[str] = QUORUM_EVENTS, limit: int = 50) -> list[IndexedEvent]:
        """The settlements and hardware reports (``names``) whose quorum ``signer`` was in, newest first."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_EVENT_COLUMNS} JOIN dashboard_quorums q ON q.tx_hash = e.tx_hash, json_each(q.signers) s"
                f" WHERE s.value = ? AND e.name IN ({', '.join('?' for _ in names)})"
                " ORDER BY e.block DESC, e.log_index DESC LIMIT ?",
                (signer, *names, limit),
            ).fetchall()
        return [_event(row) for row in rows]

    def class_floor(self, gpu_class: int, block: int) -> int | None:
        """The floor per GPU (GOPS) the newest GpuClassSet at or before ``block`` gave the class;
        None when the index holds none (a class listed before the market's first indexed block)."""
        with self._read() as db:
            row = db.execute(
                "SELECT args FROM dashboard_events WHERE name = 'GpuClassSet'"
                " AND json_extract(args, '$.gpu_class') = ? AND block <= ? ORDER BY block DESC, log_index DESC LIMIT 1",
                (gpu_class, block),
            ).fetchone()
        return None if row is None else int(json.loads(row[0])["floor_per_gpu"])

    def last_block(self) -> int | None:
        """The block of the newest indexed event; None before the first."""
        with self._read() as db:
            row = db.execute("SELECT max(block) FROM dashboard_events").fetchone()
        return None if row[0] is None else int(row[0])

    def latest(self, names: Collection[str]) -> tuple[int, int] | None:
        """(block, log index) of the newest event of these names; None if there is none."""
        with self._read() as db:
            row = db.execute(
                f"SELECT block, log_index FROM dashboard_events WHERE name IN ({', '.join('?' for _ in names)})"
                " ORDER BY block DESC, log_index DESC LIMIT 1",
                list(names),
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    # ------------------------------------------------------------------ totals

    def totals(self) -> Totals:
        sums: Counter[str] = Counter()
        wanted = {
            "Staked": ("amount",),
            "Withdrawn": ("amount",),
            "Slashed": ("amount",),
            "JobSettled": ("provider_payment", "protocol_fee", "client_refund"),
        }
        with self._read() as db:
            rows = db.execute(
                f"SELECT name, args FROM dashboard_events WHERE name IN ({', '.join('?' for _ in wanted)})",
                list(wanted),
            ).fetchall()
            escrows = db.execute(
                f"SELECT escrow FROM dashboard_jobs WHERE state IN ({', '.join('?' for _ in _LIVE_STATES)})",
                _LIVE_STATES,
            ).fetchall()
        for name, args in rows:
            arguments = json.loads(args)
            for field in wanted[name]:
                sums[f"{name}.{field}"] += int(arguments[field])
        return Totals(
            staked=sums["Staked.amount"] - sums["Withdrawn.amount"] - sums["Slashed.amount"],
            escrowed=sum(int(row[0]) for row in escrows),
            paid=sums["JobSettled.provider_payment"],
            fees=sums["JobSettled.protocol_fee"],
            refunded=sums["JobSettled.client_refund"],
            slashed=sums["Slashed.amount"],
        )
