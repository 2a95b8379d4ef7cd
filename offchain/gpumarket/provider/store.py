"""The agent's durable state: jobs, used request nonces, answered challenges (SQLite).

SQLite in WAL mode with ``synchronous=FULL``: a change is on disk when its call returns, so a
crash loses nothing that was acknowledged. Every change is one explicit ``BEGIN IMMEDIATE``
transaction; one connection serves all threads behind a lock.

A job moves ``accepted`` -> ``spec_received`` -> ``running`` -> ``finished``, or to ``lost``
from ``spec_received`` or ``running`` (or from ``accepted`` when it ends on chain first); each
transition names the states it may leave, so a late or repeated call cannot move a job
backwards (``StoreConflict``). ``accepted`` is for the chain watcher (a job this provider took
on chain whose spec has not come yet); a spec may also arrive for a job the store has not seen,
since the chain is the authority.

``recover`` runs when the agent starts: it asks a probe about every job that was
``spec_received`` or ``running`` and returns the ones to follow again (their process still
runs), the ones to finish (their process ended while the agent was down and left its ending on
disk: the agent records them ``finished`` from their files) and the ones to start (they never
started); a job whose process vanished without an ending is marked ``lost``. A job found
running or ended is ``running`` in the store before it is returned.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gpumarket.storage import open_durable, write_transaction

__all__ = [
    "ChallengeRecord",
    "JobRecord",
    "JobStatus",
    "Liveness",
    "Probe",
    "Recovery",
    "Store",
    "StoreConflict",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,            -- uint256 as decimal text
    client TEXT NOT NULL,
    spec_hash BLOB NOT NULL,
    spec BLOB,                          -- canonical spec bytes, once received
    state TEXT NOT NULL CHECK (state IN ('accepted', 'spec_received', 'running', 'finished', 'lost')),
    gpus TEXT NOT NULL DEFAULT '[]',    -- JSON list of GPU indices assigned
    workdir TEXT,
    pid INTEGER,
    start_ticks INTEGER,                -- with pid, names the process for good
    started_at REAL,
    finished_at REAL,
    exit_code INTEGER,
    stop_reason TEXT,
    output_limit_exceeded INTEGER,
    result_hash BLOB,
    evidence_hash BLOB,
    detail TEXT,
    reason TEXT,                        -- a lost job's stable code (image_not_found, deadline_passed, ...)
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    signer TEXT NOT NULL,
    nonce BLOB NOT NULL,
    issued_at INTEGER NOT NULL,
    PRIMARY KEY (signer, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_by_age ON nonces (issued_at);
CREATE TABLE IF NOT EXISTS challenges (
    challenge_id BLOB PRIMARY KEY,
    received_at REAL NOT NULL,
    root BLOB,                          -- set once the commitment is computed
    opened_at REAL
);
"""


class StoreConflict(Exception):
    """A transition from a state that does not allow it; ``state`` is the job's current one."""

    def __init__(self, job_id: int, state: str | None, wanted: str) -> None:
        super().__init__(f"job {job_id} is {state or 'unknown'}; cannot become {wanted}")
        self.job_id = job_id
        self.state = state


class JobStatus(StrEnum):
    ACCEPTED = "accepted"
    SPEC_RECEIVED = "spec_received"
    RUNNING = "running"
    FINISHED = "finished"
    LOST = "lost"


@dataclass(frozen=True)
class JobRecord:
    job_id: int
    client: str
    spec_hash: bytes
    spec: bytes | None
    state: JobStatus
    gpus: tuple[int, ...]
    workdir: str | None
    pid: int | None
    start_ticks: int | None
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    stop_reason: str | None
    output_limit_exceeded: bool | None
    result_hash: bytes | None
    evidence_hash: bytes | None
    detail: str | None
    reason: str | None
    updated_at: float

    @property
    def image(self) -> str | None:
        """The image of a container job's spec (version 2), None for a process job or no spec."""
        if not self.spec:
            return None
        image = json.loads(self.spec).get("image")
        return image if isinstance(image, str) else None

    def public(self) -> dict[str, Any]:
        """What anyone may see of the job (the status endpoint): no spec, no client data."""
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "exit_code": self.exit_code,
            "stop_reason": self.stop_reason,
            "timed_out": self.stop_reason == "timeout" if self.state == JobStatus.FINISHED else None,
            "output_limit_exceeded": self.output_limit_exceeded,
            "result_hash": "0x" + self.result_hash.hex() if self.result_hash else None,
            "evidence_hash": "0x" + self.evidence_hash.hex() if self.evidence_hash else None,
            "detail": self.detail,
            "reason": self.reason,
            "image": self.image,
        }


@dataclass(frozen=True)
class ChallengeRecord:
    challenge_id: bytes
    received_at: float
    root: bytes | None
    opened_at: float | None


class Liveness(StrEnum):
    ALIVE = "alive"  # the job's process still runs
    ENDED = "ended"  # it ran and ended, and left its ending on disk (an exit status)
    GONE = "gone"  # it ran and vanished without an ending (killed, or the machine went down)
    NOT_STARTED = "not_started"  # it never started


@dataclass(frozen=True)
class Probe:
    """What the agent found of a job's process at restart."""

    liveness: Liveness
    pid: int | None = None
    start_ticks: int | None = None
    started_at: float | None = None


@dataclass(frozen=True)
class Recovery:
    resume: list[JobRecord] = field(default_factory=list)  # running: follow them again
    ended: list[JobRecord] = field(default_factory=list)  # ended while the agent was down: finish them
    start: list[JobRecord] = field(default_factory=list)  # spec received, never started
    lost: list[JobRecord] = field(default_factory=list)

    def summary(self) -> str:
        """One log line: what a restart found."""
        return (
            f"recovered: {len(self.resume)} followed again, {len(self.ended)} ended while the agent was down, "
            f"{len(self.start)} started, {len(self.lost)} lost"
        )


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=int(row["job_id"]),
        client=row["client"],
        spec_hash=bytes(row["spec_hash"]),
        spec=bytes(row["spec"]) if row["spec"] is not None else None,
        state=JobStatus(row["state"]),
        gpus=tuple(json.loads(row["gpus"])),
        workdir=row["workdir"],
        pid=row["pid"],
        start_ticks=row["start_ticks"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        exit_code=row["exit_code"],
        stop_reason=row["stop_reason"],
        output_limit_exceeded=None if row["output_limit_exceeded"] is None else bool(row["output_limit_exceeded"]),
        result_hash=bytes(row["result_hash"]) if row["result_hash"] is not None else None,
        evidence_hash=bytes(row["evidence_hash"]) if row["evidence_hash"] is not None else None,
        detail=row["detail"],
        reason=row["reason"],
        updated_at=row["updated_at"],
    )


class Store:
    """The agent's SQLite database at ``path`` (created if missing)."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = open_durable(self.path, timeout_s=30)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.executescript(_SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS
            columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "reason" not in columns:  # a database from before lost jobs carried a reason code
                self._db.execute("ALTER TABLE jobs ADD COLUMN reason TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    # ------------------------------------------------------------------ jobs

    def get(self, job_id: int) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (str(job_id),)).fetchone()
        return _job(row) if row else None

    def jobs(self, states: Iterable[JobStatus] | None = None) -> list[JobRecord]:
        with self._lock:
            if states is None:
                rows = self._db.execute("SELECT * FROM jobs").fetchall()
            else:
                wanted = [JobStatus(state).value for state in states]
                marks = ",".join("?" * len(wanted))
                rows = self._db.execute(f"SELECT * FROM jobs WHERE state IN ({marks})", wanted).fetchall()
        return sorted((_job(row) for row in rows), key=lambda job: job.job_id)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    def accept(self, job_id: int, client: str, spec_hash: bytes) -> JobRecord:
        """Records a job this provider took on chain (no-op when the store already has it)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, client, spec_hash, state, updated_at) VALUES (?, ?, ?, ?, ?)",
                (str(job_id), client, spec_hash, JobStatus.ACCEPTED.value, self._clock()),
            )
        return self._must_get(job_id)

    def receive_spec(
        self, job_id: int, client: str, spec_hash: bytes, spec: bytes, gpus: tuple[int, ...], workdir: str
    ) -> JobRecord:
        """Stores the spec of a new or ``accepted`` job; StoreConflict when it already has one."""
        now = self._clock()
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE job_id = ?", (str(job_id),)).fetchone()
            if row is not None and row["state"] != JobStatus.ACCEPTED.value:
                raise StoreConflict(job_id, row["state"], JobStatus.SPEC_RECEIVED.value)
            db.execute(
                "INSERT INTO jobs (job_id, client, spec_hash, spec, state, gpus, workdir, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET client = excluded.client, spec_hash = excluded.spec_hash,"
                " spec = excluded.spec, state = excluded.state, gpus = excluded.gpus, workdir = excluded.workdir,"
                " updated_at = excluded.updated_at",
                (
                    str(job_id),
                    client,
                    spec_hash,
                    spec,
                    JobStatus.SPEC_RECEIVED.value,
                    json.dumps(list(gpus)),
                    workdir,
                    now,
                ),
            )
        return self._must_get(job_id)

    def mark_running(self, job_id: int, pid: int, start_ticks: int | None, started_at: float) -> JobRecord:
        """``start_ticks`` is None for a process never seen alive (it ended before a restart)."""
        return self._transition(
            job_id,
            (JobStatus.SPEC_RECEIVED,),
            JobStatus.RUNNING,
            pid=pid,
            start_ticks=start_ticks,
            started_at=started_at,
        )

    def mark_finished(
        self,
        job_id: int,
        *,
        finished_at: float,
        exit_code: int | None,
        stop_reason: str | None,
        output_limit_exceeded: bool,
        result_hash: bytes,
        evidence_hash: bytes,
    ) -> JobRecord:
        return self._transition(
            job_id,
            (JobStatus.RUNNING,),
            JobStatus.FINISHED,
            finished_at=finished_at,
            exit_code=exit_code,
            stop_reason=stop_reason,
            output_limit_exceeded=int(output_limit_exceeded),
            result_hash=result_hash,
            evidence_hash=evidence_hash,
        )

    def mark_lost(self, job_id: int, detail: str, reason: str | None = None) -> JobRecord:
        """``reason``: a stable code for why (``image_not_found``, ``deadline_passed``, ...);
        ``detail`` says it in words."""
        return self._transition(
            job_id,
            (JobStatus.SPEC_RECEIVED, JobStatus.RUNNING),
            JobStatus.LOST,
            finished_at=self._clock(),
            detail=detail,
            reason=reason,
        )

    def end_on_chain(self, job_id: int, detail: str) -> JobRecord | None:
        """The job ended on chain (settled or expired): an ``accepted`` job whose spec never
        came can no longer run, so it becomes ``lost`` with ``detail``. A job in any other state
        keeps it (its run, if any, records its own ending); None when the store lacks the job."""
        try:
            return self._transition(
                job_id, (JobStatus.ACCEPTED,), JobStatus.LOST, finished_at=self._clock(), detail=detail
            )
        except StoreConflict:
            return self.get(job_id)

    def _transition(self, job_id: int, sources: tuple[JobStatus, ...], target: JobStatus, **values: Any) -> JobRecord:
        columns = ", ".join(f"{name} = ?" for name in values)
        marks = ",".join("?" * len(sources))
        with self._transaction() as db:
            updated = db.execute(
                f"UPDATE jobs SET state = ?, {columns}, updated_at = ? WHERE job_id = ? AND state IN ({marks})",
                (target.value, *values.values(), self._clock(), str(job_id), *(s.value for s in sources)),
            ).rowcount
            if updated != 1:
                row = db.execute("SELECT state FROM jobs WHERE job_id = ?", (str(job_id),)).fetchone()
                raise StoreConflict(job_id, row["state"] if row else None, target.value)
        return self._must_get(job_id)

    def _must_get(self, job_id: int) -> JobRecord:
        record = self.get(job_id)
        assert record is not None
        return record

    def recover(self, probe: Callable[[JobRecord], Probe]) -> Recovery:
        """After a restart: which unfinished jobs to follow again, to finish, to start, or to
        report lost."""
        recovery = Recovery()
        for job in self.jobs((JobStatus.SPEC_RECEIVED, JobStatus.RUNNING)):
            found = probe(job)
            if found.liveness in (Liveness.ALIVE, Liveness.ENDED):
                if job.state == JobStatus.SPEC_RECEIVED:  # it started, but the agent died before recording so
                    assert found.pid is not None and found.started_at is not None
                    job = self.mark_running(job.job_id, found.pid, found.start_ticks, found.started_at)
                (recovery.resume if found.liveness == Liveness.ALIVE else recovery.ended).append(job)
            elif found.liveness == Liveness.NOT_STARTED and job.state == JobStatus.SPEC_RECEIVED:
                recovery.start.append(job)
            else:
                detail = "its process was gone when the agent restarted, and it left no exit status"
                recovery.lost.append(self.mark_lost(job.job_id, detail, "vanished"))
        return recovery

    # ------------------------------------------------------------------ nonces

    def use_nonce(self, signer: str, nonce: bytes, issued_at: int, forget_before: int) -> bool:
        """Records (signer, nonce); False when it was already there. Drops nonces issued
        before ``forget_before`` (their requests have expired)."""
        with self._transaction() as db:
            db.execute("DELETE FROM nonces WHERE issued_at < ?", (forget_before,))
            inserted = db.execute(
                "INSERT OR IGNORE INTO nonces (signer, nonce, issued_at) VALUES (?, ?, ?)", (signer, nonce, issued_at)
            ).rowcount
        return inserted == 1

    # ------------------------------------------------------------------ challenges

    def record_challenge(self, challenge_id: bytes) -> bool:
        """Records a challenge as received; False when this id was seen before (a replay)."""
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO challenges (challenge_id, received_at) VALUES (?, ?)",
                (challenge_id, self._clock()),
            ).rowcount
        return inserted == 1

    def set_challenge_root(self, challenge_id: bytes, root: bytes) -> None:
        with self._transaction() as db:
            db.execute("UPDATE challenges SET root = ? WHERE challenge_id = ? AND root IS NULL", (root, challenge_id))

    def challenge(self, challenge_id: bytes) -> ChallengeRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM challenges WHERE challenge_id = ?", (challenge_id,)).fetchone()
        if row is None:
            return None
        return ChallengeRecord(
            challenge_id=bytes(row["challenge_id"]),
            received_at=row["received_at"],
            root=bytes(row["root"]) if row["root"] is not None else None,
            opened_at=row["opened_at"],
        )

    def open_challenge(self, challenge_id: bytes) -> bool:
        """Marks a committed challenge opened; False when it is not committed or already opened."""
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE challenges SET opened_at = ? WHERE challenge_id = ? AND root IS NOT NULL AND opened_at IS NULL",
                (self._clock(), challenge_id),
            ).rowcount
        return updated == 1
