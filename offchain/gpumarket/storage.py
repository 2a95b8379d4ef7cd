"""SQLite as every gpumarket service uses it: one durable file, explicit write transactions.

The oracle's decision store, the provider agent's store and the chain event follower all keep
state that must survive a crash (a decision signed, a job started, an event handled), so they
open their file the same way: WAL journal (readers never block the writer), `synchronous=FULL`
(a COMMIT is on disk before it returns), no implicit transactions (`isolation_level=None`:
every write says BEGIN IMMEDIATE itself), and one connection shared by the service's threads
under a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 10.0


class StorageError(RuntimeError):
    """The database could not be opened as a durable store."""


def open_durable(path: Path | str, *, timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open (creating if missing) the SQLite file at `path` in WAL mode with synchronous=FULL."""
    connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=timeout_s)
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"SQLite refused WAL mode (got {mode!r}) for {path}")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        connection.close()
        raise
    return connection


@contextmanager
def write_transaction(db: sqlite3.Connection, lock: threading.Lock | threading.RLock) -> Iterator[sqlite3.Connection]:
    """One write transaction: BEGIN IMMEDIATE (takes the write lock now), COMMIT or ROLLBACK."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
