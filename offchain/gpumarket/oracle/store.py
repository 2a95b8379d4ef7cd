"""The oracle's crash-safe decision store (SQLite).

The one rule this module exists for: **the oracle never signs two different reports for one
job (or one hardware measurement), even across a crash.** It holds because

1. a decision (the exact EIP-712 report) is committed, durably, *before* anything signs it:
   WAL journal, ``synchronous=FULL`` (the WAL is fsynced at the decision's commit), explicit
   ``BEGIN IMMEDIATE`` transactions;
2. the decision for a key (a job id; a hardware report's ``(provider, claim_version,
   valid_until)``) is write-once: :meth:`DecisionStore.decide` with different content raises
   :class:`ConflictingDecision`, with the same content returns the stored decision (and its
   signature, when one was attached) unchanged;
3. signatures are made only from a :class:`Decision` this store returned, i.e. from a
   committed row (see :mod:`gpumarket.oracle.signer`). Signing is deterministic (RFC 6979),
   so a crash between commit and storing the signature re-signs to the same bytes.

Only a decision needs the fsync. A write that stores signatures alone (ours in
:meth:`DecisionStore.attach_signature`, a peer's in :meth:`DecisionStore.add_peer_signature`)
commits with ``synchronous=NORMAL``: its WAL frames are written (a killed process loses
nothing) and reach the disk with the next decision's commit or a checkpoint, so a power cut can
lose only signatures stored since the last fsync. Nothing breaks then: ours is made again from
the committed decision (the same bytes, point 3) and a peer's is gathered again. That leaves
one fsync, not three, on an oracle's per-report path (``gpumarket bench oracle``).

Besides decisions the store keeps: the committees the chain announced (``epoch ->
members, threshold``) so a peer's signature can be checked on insert; every verified
signature over a decided report (ours and peers', keyed by digest and signer), from which
the signer assembles a quorum; each job's settlement status (submitted tx hash, settled);
and named event cursors for the chain follower.

uint256 values (job ids, valid_until) are stored as canonical decimal TEXT: SQLite integers
are 64-bit. Epochs are INTEGER (they count committee changes from 1). The schema is
versioned with ``PRAGMA user_version`` and built by the ordered migrations in
``_MIGRATIONS`` from an empty file; a file from a newer version is refused. Migration 3
(hardware reports name the claim version they measured) drops the hardware decisions of an
older file and their signatures: they are of the old HardwareReport type, which no current
contract verifies, so nothing signed under the new type can conflict with them; job
decisions, committees, settlements and cursors are kept. Migration 6 records how each observed
signature attests its report: alone, or as a leaf of a signed batch root (with its Merkle path).

One store is bound, at first open, to one EIP-712 domain (chain id, contract, name,
version) and one oracle address; opening it with another raises :class:`StoreMismatch`,
so one oracle's decisions never leak into another deployment.

Thread safety: one connection guarded by a lock (the HTTP server calls in from its threads);
several processes may open the same file (WAL; writers serialise on ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from eth_utils.address import to_checksum_address

from gpumarket.chain.limits import MAX_MEMBERS
from gpumarket.signing import eip712
from gpumarket.signing.batch import ReportTree
from gpumarket.signing.eip712 import Domain, HardwareReport, JobReport, JobReportBatch, Report
from gpumarket.storage import StorageError, open_durable, write_transaction

__all__ = [
    "SCHEMA_VERSION",
    "AddResult",
    "Attestation",
    "ChallengeRecord",
    "CommitteeInfo",
    "ConflictingDecision",
    "Cursor",
    "Decision",
    "DecisionStore",
    "Equivocation",
    "InvalidSignature",
    "NotAMember",
    "NotDecided",
    "ReportKind",
    "ReportMismatch",
    "SchemaTooNew",
    "SettlementStatus",
    "StoreCounts",
    "StoreError",
    "StoreMismatch",
    "StoredSignature",
    "UnknownEpoch",
    "WatchedJob",
    "hardware_key",
    "job_key",
    "report_key",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 6
_BUSY_TIMEOUT_MS = 10_000

ReportKind = Literal["job", "hardware"]

# Each entry moves the schema from version i to i + 1; run inside one transaction.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    -- committees as the chain announced them; a member list is a JSON array of checksummed addresses
    CREATE TABLE committees (
        epoch INTEGER PRIMARY KEY CHECK (epoch >= 1),
        members TEXT NOT NULL,
        threshold INTEGER NOT NULL CHECK (threshold >= 1),
        recorded_at REAL NOT NULL
    ) STRICT;
    -- write-once: one decision per job, committed before anything signs it
    CREATE TABLE job_decisions (
        job_id TEXT PRIMARY KEY,
        report_json TEXT NOT NULL,
        digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
        epoch INTEGER NOT NULL,
        decided_at REAL NOT NULL,
        signature BLOB CHECK (signature IS NULL OR length(signature) = 65),
        signed_at REAL
    ) STRICT;
    CREATE TABLE hardware_decisions (
        provider TEXT NOT NULL,
        valid_until TEXT NOT NULL,
        report_json TEXT NOT NULL,
        digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
        epoch INTEGER NOT NULL,
        decided_at REAL NOT NULL,
        signature BLOB CHECK (signature IS NULL OR length(signature) = 65),
        signed_at REAL,
        PRIMARY KEY (provider, valid_until)
    ) STRICT;
    -- verified signatures over decided reports (ours and peers'), by digest and signer
    CREATE TABLE signatures (
        digest BLOB NOT NULL,
        signer TEXT NOT NULL,
        signature BLOB NOT NULL CHECK (length(signature) = 65),
        source TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (digest, signer)
    ) STRICT;
    CREATE TABLE settlements (
        job_id TEXT PRIMARY KEY REFERENCES job_decisions (job_id),
        tx_hash TEXT,
        submitted_at REAL,
        submissions INTEGER NOT NULL DEFAULT 0,
        settled INTEGER NOT NULL DEFAULT 0 CHECK (settled IN (0, 1)),
        settled_at REAL,
        settled_tx TEXT
    ) STRICT;
    CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        block INTEGER NOT NULL CHECK (block >= 0),
        block_hash TEXT,
        updated_at REAL NOT NULL
    ) STRICT;
    """,
    """
    -- running jobs this oracle follows (challenges, heartbeats) until they end on chain:
    -- written when the JobAccepted event is handled, so a restart follows them again
    CREATE TABLE watched_jobs (
        job_id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        started_at INTEGER NOT NULL CHECK (started_at >= 0),
        watched_at REAL NOT NULL
    ) STRICT;
    """,
    """
    -- hardware reports carry the provider's claim version (two claims measured in one hour
    -- must not share a key); the old rows are of the old report type: dropped, see above
    DELETE FROM signatures WHERE digest IN (SELECT digest FROM hardware_decisions);
    DROP TABLE hardware_decisions;
    CREATE TABLE hardware_decisions (
        provider TEXT NOT NULL,
        claim_version TEXT NOT NULL,
        valid_until TEXT NOT NULL,
        report_json TEXT NOT NULL,
        digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
        epoch INTEGER NOT NULL,
        decided_at REAL NOT NULL,
        signature BLOB CHECK (signature IS NULL OR length(signature) = 65),
        signed_at REAL,
        PRIMARY KEY (provider, claim_version, valid_until)
    ) STRICT;
    """,
    """
    -- each challenge this oracle ran against a job's provider while it followed the job, for
    -- its API (GET /challenges/job/<id>: the dashboard's job timeline); a record, not evidence:
    -- decisions never read it
    CREATE TABLE job_challenges (
        job_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        measured_gops REAL,
        required_gops REAL NOT NULL,
        verdict TEXT NOT NULL
    ) STRICT;
    CREATE INDEX job_challenges_by_job ON job_challenges (job_id, at);
    """,
    """
    -- every member's signature this oracle received over a report of a key it decided or
    -- follows, whether or not the report is its own decision: two different reports of one
    -- key and epoch by one member are equivocation, which OracleBonds slashes (at most two
    -- reports are kept per key, epoch and signer: the second is the evidence)
    CREATE TABLE observed_signatures (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        signer TEXT NOT NULL,
        digest BLOB NOT NULL CHECK (length(digest) = 32),
        report_json TEXT NOT NULL,
        signature BLOB NOT NULL CHECK (length(signature) = 65),
        received_at REAL NOT NULL,
        PRIMARY KEY (kind, key, epoch, signer, digest)
    ) STRICT;
    -- equivocations found, and what became of the proof this oracle submitted
    CREATE TABLE equivocations (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        signer TEXT NOT NULL,
        first_digest BLOB NOT NULL,
        second_digest BLOB NOT NULL,
        found_at REAL NOT NULL,
        proof_tx TEXT,
        outcome TEXT,
        PRIMARY KEY (kind, key, epoch, signer)
    ) STRICT;
    """,
    """
    -- a member's signature of a batch root counts as its signature of every report in the batch:
    -- such a row keeps the root's signature and the report's Merkle path to the root (its
    -- sibling hashes, 32 bytes each; empty for a batch of one); NULL: the report signed alone
    ALTER TABLE observed_signatures ADD COLUMN path BLOB CHECK (path IS NULL OR length(path) % 32 = 0);
    """,
)

assert len(_MIGRATIONS) == SCHEMA_VERSION


# --------------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base of the store's refusals; ``str()`` says why and never holds key material."""


class ConflictingDecision(StoreError):
    """A different decision is already committed for this key; the new one is refused."""

    def __init__(self, kind: ReportKind, key: tuple[str, ...], stored: Report, proposed: Report) -> None:
        self.kind = kind
        self.key = key
        self.stored = stored
        self.proposed = proposed
        super().__init__(
            f"{kind} {'/'.join(key)}: a different decision is already committed "
            f"(stored {eip712.to_json(stored)}, refused {eip712.to_json(proposed)})"
        )


class NotDecided(StoreError):
    """No decision is stored for this key."""


class ReportMismatch(StoreError):
    """A peer's report differs from our committed decision for the same key."""

    def __init__(self, kind: ReportKind, key: tuple[str, ...], ours: Report, theirs: Report) -> None:
        self.kind = kind
        self.key = key
        self.ours = ours
        self.theirs = theirs
        super().__init__(f"{kind} {'/'.join(key)}: the report differs from this oracle's decision")


class InvalidSignature(StoreError):
    """The signature is malformed or recovers to no key (or not to the claimed signer)."""


class UnknownEpoch(StoreError):
    """No committee is recorded for the report's epoch, so membership cannot be checked."""


class NotAMember(StoreError):
    """The signature recovers to an address outside the report epoch's committee."""

    def __init__(self, signer: str, epoch: int) -> None:
        self.signer = signer
        self.epoch = epoch
        super().__init__(f"{signer} is not a member of the epoch {epoch} committee")


class StoreMismatch(StoreError):
    """The database file belongs to another domain or another oracle, or holds conflicting facts."""


class SchemaTooNew(StoreError):
    """The database was written by a newer version of this code."""


# --------------------------------------------------------------------------- values


class AddResult(enum.Enum):
    """What adding a verified signature did."""

    ADDED = "added"
    DUPLICATE = "duplicate"  # this signer's signature over this digest was already stored


@dataclass(frozen=True)
class Decision:
    """A committed decision: the exact report, its digest, and our signature once attached."""

    kind: ReportKind
    key: tuple[str, ...]
    report: Report
    digest: bytes
    decided_at: float
    signature: bytes | None
    signed_at: float | None
    created: bool = False  # True only on the decide() call that committed it


@dataclass(frozen=True)
class Attestation:
    """A member's signature of ``report``: of the report alone (``path`` None), or of a batch
    root (a ``JobReportBatch``), with the Merkle path of the report's leaf to it
    (gpumarket.signing.batch); OracleBonds takes either."""

    report: Report
    signature: bytes
    path: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class Equivocation:
    """Two different reports of one key and epoch, each signed by ``signer``: the proof
    OracleBonds slashes; ``proof_tx``/``outcome`` say what became of this oracle's submission."""

    kind: ReportKind
    key: tuple[str, ...]
    epoch: int
    signer: str
    first: Attestation
    second: Attestation
    found_at: float
    proof_tx: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class StoredSignature:
    signer: str
    signature: bytes
    source: str
    received_at: float


@dataclass(frozen=True)
class CommitteeInfo:
    epoch: int
    members: tuple[str, ...]
    threshold: int

    def is_member(self, address: str) -> bool:
        return eip712.checksum_address(address) in self.members


@dataclass(frozen=True)
class SettlementStatus:
    job_id: int
    tx_hash: str | None
    submitted_at: float | None
    submissions: int
    settled: bool
    settled_at: float | None
    settled_tx: str | None


@dataclass(frozen=True)
class WatchedJob:
    """A running job the oracle follows: its id, provider and on-chain start (unix seconds)."""

    job_id: int
    provider: str
    started_at: int


@dataclass(frozen=True)
class Cursor:
    name: str
    block: int
    block_hash: str | None
    updated_at: float


@dataclass(frozen=True)
class ChallengeRecord:
    """A challenge this oracle ran against a job's provider: its kind (start, heartbeat, end),
    when it ended (unix seconds), the throughput measured (None without a valid answer), the
    throughput the job required, and the verdict ("pass", "slow", "fail", "untrusted": valid
    work without a verdict this oracle trusts, or "no answer")."""

    kind: str
    at: float
    measured_gops: float | None
    required_gops: float
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at,
            "measured_gops": self.measured_gops,
            "required_gops": self.required_gops,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class StoreCounts:
    job_decisions: int
    hardware_decisions: int
    signed_job_decisions: int
    signatures: int
    peer_signatures: int
    settled_jobs: int


# --------------------------------------------------------------------------- keys


def job_key(job_id: int) -> tuple[str, ...]:
    """The store key of a job's decision."""
    return (str(_uint(job_id, 256, "job_id")),)


def hardware_key(provider: str, claim_version: int, valid_until: int) -> tuple[str, ...]:
    """The store key of a hardware decision: (checksummed provider, claim version, valid_until)."""
    return (
        to_checksum_address(provider),
        str(_uint(claim_version, 64, "claim_version")),
        str(_uint(valid_until, 64, "valid_until")),
    )


def report_key(report: Report) -> tuple[ReportKind, tuple[str, ...]]:
    if isinstance(report, JobReport):
        return "job", job_key(report.job_id)
    if isinstance(report, HardwareReport):
        return "hardware", hardware_key(report.provider, report.claim_version, report.valid_until)
    raise TypeError(f"expected a JobReport or HardwareReport, got {type(report).__name__}")


def _uint(value: int, bits: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise ValueError(f"{where}: expected an int in [0, 2**{bits})")
    return value


@dataclass(frozen=True)
class _Table:
    name: str
    key_columns: tuple[str, ...]
    report_type: type[JobReport] | type[HardwareReport]

    @property
    def where(self) -> str:
        return " AND ".join(f"{column} = ?" for column in self.key_columns)


_TABLES: dict[ReportKind, _Table] = {
    "job": _Table("job_decisions", ("job_id",), JobReport),
    "hardware": _Table("hardware_decisions", ("provider", "claim_version", "valid_until"), HardwareReport),
}


def _encode_report(report: Report) -> str:
    # Canonical: to_json orders members as declared; ints stay exact (Python json is bignum-safe).
    return json.dumps(eip712.to_json(report), separators=(",", ":"))


@lru_cache(maxsize=1024)
def _decode_report(kind: ReportKind, report_json: str) -> Report:
    # Memoized: a decision is read back several times per report (peers' signatures, the quorum),
    # and a report is immutable, so the same stored text always decodes to an equal report.
    return eip712.from_json(json.loads(report_json), _TABLES[kind].report_type)


# --------------------------------------------------------------------------- the store


class DecisionStore:
    """SQLite state of one oracle: decisions, signatures, committees, settlements, cursors.

    Open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, connection: sqlite3.Connection, domain: Domain, oracle: str, path: str) -> None:
        self._db = connection
        self._lock = threading.RLock()
        self.domain = domain
        self.oracle = oracle
        self.path = path

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, path: str | Path, domain: Domain, oracle: str) -> DecisionStore:
        """Open (creating and migrating as needed) the store at ``path`` for ``domain`` and ``oracle``.

        Raises StoreMismatch when the file was bound to another domain or oracle, and
        SchemaTooNew when a newer version of this code wrote it.
        """
        if not isinstance(domain, Domain):
            raise TypeError(f"expected a Domain, got {type(domain).__name__}")
        oracle = to_checksum_address(oracle)
        try:
            connection = open_durable(path)
        except StorageError as exc:
            raise StoreError(str(exc)) from None
        try:
            connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            store = cls(connection, domain, oracle, str(path))
            store._migrate()
            store._bind()
        except BaseException:
            connection.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DecisionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    @contextmanager
    def _write_signatures(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that stores signatures only: committed without the WAL fsync (module doc)."""
        with self._lock:
            self._db.execute("PRAGMA synchronous = NORMAL")
            try:
                with write_transaction(self._db, self._lock) as db:
                    yield db
            finally:
                self._db.execute("PRAGMA synchronous = FULL")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # A read transaction gives the several SELECTs of one call a single snapshot.
        with self._lock:
            self._db.execute("BEGIN DEFERRED")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _select(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        # One statement reads one snapshot on its own: no explicit transaction (fetchall ends the statement).
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _select_one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = self._select(sql, args)
        return rows[0] if rows else None

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(f"{self.path}: schema version {version} is newer than {SCHEMA_VERSION}")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _split_sql(_MIGRATIONS[target - 1]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")
                logger.info("decision store %s: migrated to schema version %d", self.path, target)

    def _bind(self) -> None:
        wanted = {
            "chain_id": str(self.domain.chain_id),
            "verifying_contract": self.domain.verifying_contract,
            "domain_name": self.domain.name,
            "domain_version": self.domain.version,
            "oracle": self.oracle,
        }
        with self._write() as db:
            stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
            for key, value in wanted.items():
                if key not in stored:
                    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
                elif stored[key] != value:
                    raise StoreMismatch(f"{self.path}: bound to {key}={stored[key]!r}, not {value!r}")

    # ---------------------------------------------------------------- decisions

    def decide(self, report: Report) -> Decision:
        """Commit ``report`` as this oracle's decision for its key, or return the same stored one.

        Durable when it returns. Raises ConflictingDecision, changing nothing, when a
        different report is already committed for the key.
        """
        kind, key = report_key(report)
        if not report.epoch < 2**63:  # epochs count committee changes; the column is an INTEGER
            raise ValueError(f"{kind} report: epoch {report.epoch} is out of range")
        table = _TABLES[kind]
        digest = eip712.digest(self.domain, report)
        with self._write() as db:
            row = db.execute(
                f"SELECT report_json, digest, decided_at, signature, signed_at FROM {table.name} WHERE {table.where}",
                key,
            ).fetchone()
            if row is not None:
                stored = self._decision(kind, key, row)
                if stored.digest != digest:
                    raise ConflictingDecision(kind, key, stored.report, report)
                return stored
            now = time.time()
            columns = (*table.key_columns, "report_json", "digest", "epoch", "decided_at")
            db.execute(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                (*key, _encode_report(report), digest, report.epoch, now),
            )
        logger.info("decided %s %s (digest 0x%s)", kind, "/".join(key), digest.hex())
        return Decision(kind, key, report, digest, now, None, None, created=True)

    def job_decision(self, job_id: int) -> Decision | None:
        return self._get_decision("job", job_key(job_id))

    def hardware_decision(self, provider: str, claim_version: int, valid_until: int) -> Decision | None:
        return self._get_decision("hardware", hardware_key(provider, claim_version, valid_until))

    def decision_for(self, report: Report) -> Decision | None:
        """The stored decision under ``report``'s key (whatever its content)."""
        return self._get_decision(*report_key(report))

    def _get_decision(self, kind: ReportKind, key: tuple[str, ...]) -> Decision | None:
        table = _TABLES[kind]
        row = self._select_one(
            f"SELECT report_json, digest, decided_at, signature, signed_at FROM {table.name} WHERE {table.where}", key
        )
        return None if row is None else self._decision(kind, key, row)

    def _decision(self, kind: ReportKind, key: tuple[str, ...], row: tuple[Any, ...]) -> Decision:
        report_json, digest, decided_at, signature, signed_at = row
        report = _decode_report(kind, report_json)
        return Decision(
            kind, key, report, bytes(digest), decided_at, None if signature is None else bytes(signature), signed_at
        )

    def attach_signature(self, decision: Decision, signature: bytes) -> Decision:
        """Store this oracle's own signature of a committed decision; returns the updated decision.

        The signature must recover to this store's oracle over the stored digest. If one is
        already attached it is kept (signing is deterministic, so it is the same bytes).
        """
        table = _TABLES[decision.kind]
        signer = _recover(self.domain, decision.report, signature)
        if signer != self.oracle:
            raise InvalidSignature(f"the signature recovers to {signer}, not to this oracle {self.oracle}")
        with self._write_signatures() as db:
            row = db.execute(
                f"SELECT report_json, digest, decided_at, signature, signed_at FROM {table.name} WHERE {table.where}",
                decision.key,
            ).fetchone()
            if row is None:
                raise NotDecided(f"{decision.kind} {'/'.join(decision.key)}: no committed decision")
            stored = self._decision(decision.kind, decision.key, row)
            if stored.digest != decision.digest:  # unreachable unless the file was edited
                raise ConflictingDecision(decision.kind, decision.key, stored.report, decision.report)
            if stored.signature is not None:
                return stored
            now = time.time()
            db.execute(
                f"UPDATE {table.name} SET signature = ?, signed_at = ? WHERE {table.where}",
                (signature, now, *decision.key),
            )
            db.execute(
                "INSERT OR IGNORE INTO signatures (digest, signer, signature, source, received_at) "
                "VALUES (?, ?, ?, 'self', ?)",
                (decision.digest, signer, bytes(signature), now),
            )
        return Decision(
            decision.kind, decision.key, decision.report, decision.digest, decision.decided_at, bytes(signature), now
        )

    # ---------------------------------------------------------------- peers' signatures

    def add_peer_signature(self, report: Report, signature: bytes | str, source: str = "peer") -> tuple[AddResult, str]:
        """Verify and store a peer's signature of ``report``; returns (result, signer).

        Refuses, storing nothing as a signature for settlement: NotDecided (no decision for the
        report's key yet), ReportMismatch (the report is not exactly our decision),
        InvalidSignature (malformed or unrecoverable), UnknownEpoch (no committee recorded for
        the epoch), NotAMember (the signer is outside that epoch's committee). A member's valid
        signature is observed either way, in the same write (:meth:`observe_signature`): a
        report that is not ours may be half of an equivocation.
        """
        kind, key = report_key(report)
        decision = self._get_decision(kind, key)
        refusal: StoreError | None = None
        if decision is None:
            refusal = NotDecided(f"{kind} {'/'.join(key)}: this oracle has not decided it")
        elif eip712.digest(self.domain, report) != decision.digest:
            refusal = ReportMismatch(kind, key, decision.report, report)
        try:
            signer = _recover(self.domain, report, signature)
        except InvalidSignature:
            if refusal is not None:
                raise refusal from None
            raise
        committee = self.committee(report.epoch)
        member = committee is not None and committee.is_member(signer)
        if refusal is None and committee is None:
            refusal = UnknownEpoch(f"no committee is recorded for epoch {report.epoch}")
        elif refusal is None and not member:
            assert committee is not None
            refusal = NotAMember(signer, committee.epoch)
        added = False
        with self._write_signatures() as db:
            if member and signer != self.oracle:  # our own key signs once per key (write-once)
                self._observe(db, Attestation(report, _signature_bytes(signature)), signer)
            if refusal is None:
                assert decision is not None
                cursor = db.execute(
                    "INSERT OR IGNORE INTO signatures (digest, signer, signature, source, received_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (decision.digest, signer, _signature_bytes(signature), source, time.time()),
                )
                added = cursor.rowcount == 1
        if refusal is not None:
            raise refusal
        return (AddResult.ADDED if added else AddResult.DUPLICATE), signer

    def observe_signature(self, report: Report, signature: bytes | str) -> Equivocation | None:
        """Keep a member's valid signature of ``report`` as evidence; returns the equivocation it
        completes, if its signer signed another report of the same key in the same epoch.

        Only keys this oracle decided or follows are kept (anyone can push to the API, so what is
        stored stays bounded by this oracle's own work), at most two reports per key, epoch and
        signer. Anything else (bad signature, unknown epoch, not a member) is ignored.
        """
        try:
            signer = _recover(self.domain, report, signature)
        except InvalidSignature:
            return None
        if not self._observed_member(signer, report.epoch):
            return None
        with self._write_signatures() as db:
            found = self._observe(db, Attestation(report, _signature_bytes(signature)), signer)
        return self._equivocations_of(signer, [report])[0] if found else None

    def observe_batch_signature(self, tree: ReportTree, signature: bytes | str) -> list[Equivocation]:
        """Keep a member's valid signature of ``tree``'s root (a ``JobReportBatch`` of its epoch)
        as its signature of each report in the tree, with the report's Merkle path; returns the
        equivocations it completes (:meth:`observe_signature`'s, report by report).

        As for a single signature, only reports of keys this oracle decided or follows are kept
        (the tree of a batch it proposed is of its own decisions), at most two per key, epoch and
        signer; a signature that recovers to no member of the epoch's committee (one of another
        root, say) is ignored.
        """
        try:
            signer = eip712.recover(self.domain, JobReportBatch(root=tree.root, epoch=tree.epoch), signature)
        except ValueError:
            return []
        if not self._observed_member(signer, tree.epoch):
            return []
        root_signature = _signature_bytes(signature)
        completed = []
        with self._write_signatures() as db:
            for report in tree.reports:
                attestation = Attestation(report, root_signature, tuple(tree.path(report)))
                if self._observe(db, attestation, signer):
                    completed.append(report)
        return self._equivocations_of(signer, completed)

    def _observed_member(self, signer: str, epoch: int) -> bool:
        """Whether a signature by ``signer`` in ``epoch`` is worth keeping: a member's, not ours
        (our own key signs once per key: decisions are write-once)."""
        committee = self.committee(epoch)
        return committee is not None and committee.is_member(signer) and signer != self.oracle

    def _equivocations_of(self, signer: str, reports: Sequence[Report]) -> list[Equivocation]:
        """The recorded equivocations of ``signer`` over the keys and epochs of ``reports``."""
        wanted = {(*report_key(report), report.epoch) for report in reports}
        return [e for e in self.equivocations() if e.signer == signer and (e.kind, e.key, e.epoch) in wanted]

    def _observe(self, db: sqlite3.Connection, attestation: Attestation, signer: str) -> bool:
        """Within a write: keep a member's attestation as evidence; True when it completes an
        equivocation (recorded in ``equivocations``)."""
        report = attestation.report
        kind, key = report_key(report)
        table = _TABLES[kind]
        decided = db.execute(f"SELECT 1 FROM {table.name} WHERE {table.where}", key).fetchone()
        followed = kind == "job" and db.execute("SELECT 1 FROM watched_jobs WHERE job_id = ?", (key[0],)).fetchone()
        if not decided and not followed:
            return False
        digest = eip712.digest(self.domain, report)
        joined = "/".join(key)
        others = db.execute(
            "SELECT digest FROM observed_signatures WHERE kind = ? AND key = ? AND epoch = ? AND signer = ?",
            (kind, joined, report.epoch, signer),
        ).fetchall()
        known = {bytes(row[0]) for row in others}
        if digest in known or len(known) >= 2:
            return False
        path = None if attestation.path is None else b"".join(attestation.path)
        db.execute(
            "INSERT INTO observed_signatures "
            "(kind, key, epoch, signer, digest, report_json, signature, received_at, path) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                joined,
                report.epoch,
                signer,
                digest,
                _encode_report(report),
                attestation.signature,
                time.time(),
                path,
            ),
        )
        if not known:
            return False
        db.execute(
            "INSERT OR IGNORE INTO equivocations (kind, key, epoch, signer, first_digest, second_digest, found_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, joined, report.epoch, signer, known.pop(), digest, time.time()),
        )
        logger.warning("%s signed two different %s reports for %s in epoch %d", signer, kind, joined, report.epoch)
        return True

    def equivocations(self, *, open_only: bool = False) -> list[Equivocation]:
        """Every equivocation found (``open_only``: those whose proof is not settled yet)."""
        sql = (
            "SELECT e.kind, e.key, e.epoch, e.signer, e.found_at, e.proof_tx, e.outcome, "
            "a.report_json, a.signature, a.path, b.report_json, b.signature, b.path FROM equivocations e "
            "JOIN observed_signatures a ON a.kind = e.kind AND a.key = e.key AND a.epoch = e.epoch "
            "AND a.signer = e.signer AND a.digest = e.first_digest "
            "JOIN observed_signatures b ON b.kind = e.kind AND b.key = e.key AND b.epoch = e.epoch "
            "AND b.signer = e.signer AND b.digest = e.second_digest"
            + (" WHERE e.outcome IS NULL" if open_only else "")
            + " ORDER BY e.found_at"
        )
        found = []
        for row in self._select(sql):
            kind, key, epoch, signer, at, tx, outcome = row[:7]
            first_json, first_sig, first_path, second_json, second_sig, second_path = row[7:]
            found.append(
                Equivocation(
                    kind=kind,
                    key=tuple(key.split("/")),
                    epoch=epoch,
                    signer=signer,
                    first=_attestation(kind, first_json, first_sig, first_path),
                    second=_attestation(kind, second_json, second_sig, second_path),
                    found_at=at,
                    proof_tx=tx,
                    outcome=outcome,
                )
            )
        return found

    def record_equivocation_proof(self, equivocation: Equivocation, outcome: str, tx_hash: str | None = None) -> None:
        """What became of the proof of ``equivocation``: submitted (its transaction), or why not."""
        with self._write() as db:
            db.execute(
                "UPDATE equivocations SET outcome = ?, proof_tx = ? "
                "WHERE kind = ? AND key = ? AND epoch = ? AND signer = ?",
                (
                    outcome,
                    tx_hash,
                    equivocation.kind,
                    "/".join(equivocation.key),
                    equivocation.epoch,
                    equivocation.signer,
                ),
            )

    def signatures(self, digest: bytes) -> list[StoredSignature]:
        """Every stored signature over ``digest``, sorted by signer address ascending."""
        rows = self._select("SELECT signer, signature, source, received_at FROM signatures WHERE digest = ?", (digest,))
        stored = [StoredSignature(signer, bytes(sig), source, at) for signer, sig, source, at in rows]
        return sorted(stored, key=lambda s: int(s.signer, 16))

    # ---------------------------------------------------------------- committees

    def set_committee(self, epoch: int, members: Sequence[str], threshold: int) -> CommitteeInfo:
        """Record the committee of ``epoch`` (idempotent; a different one for a known epoch is refused).

        Enforces the contract's rules: 1 <= threshold <= len(members) <= MAX_MEMBERS,
        threshold > len / 2, no duplicate member.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch < 2**63:
            raise ValueError("committee epoch: expected an int in [1, 2**63)")
        checked = tuple(to_checksum_address(m) for m in members)
        if len(set(checked)) != len(checked):
            raise ValueError("committee: duplicate member")
        if not 1 <= len(checked) <= MAX_MEMBERS:
            raise ValueError(f"committee: expected 1 .. {MAX_MEMBERS} members, got {len(checked)}")
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int)
            or not len(checked) / 2 < threshold <= len(checked)
        ):
            raise ValueError(f"committee: threshold must be > {len(checked)} / 2 and <= {len(checked)}")
        info = CommitteeInfo(epoch, checked, threshold)
        with self._write() as db:
            row = db.execute("SELECT members, threshold FROM committees WHERE epoch = ?", (epoch,)).fetchone()
            if row is not None:
                stored = CommitteeInfo(epoch, tuple(json.loads(row[0])), row[1])
                if stored != info:
                    raise StoreMismatch(f"epoch {epoch}: a different committee is already recorded")
                return stored
            db.execute(
                "INSERT INTO committees (epoch, members, threshold, recorded_at) VALUES (?, ?, ?, ?)",
                (epoch, json.dumps(list(checked)), threshold, time.time()),
            )
        logger.info("committee of epoch %d: %d members, threshold %d", epoch, len(checked), threshold)
        return info

    def committee(self, epoch: int) -> CommitteeInfo | None:
        row = self._select_one("SELECT members, threshold FROM committees WHERE epoch = ?", (epoch,))
        return None if row is None else CommitteeInfo(epoch, tuple(json.loads(row[0])), row[1])

    def current_committee(self) -> CommitteeInfo | None:
        """The committee of the highest recorded epoch (the chain's current one, once followed)."""
        row = self._select_one("SELECT epoch, members, threshold FROM committees ORDER BY epoch DESC LIMIT 1")
        return None if row is None else CommitteeInfo(row[0], tuple(json.loads(row[1])), row[2])

    # ---------------------------------------------------------------- settlements

    def record_submission(self, job_id: int, tx_hash: str) -> SettlementStatus:
        """Record that a settlement transaction was sent for a decided job."""
        key = job_key(job_id)
        with self._write() as db:
            if db.execute("SELECT 1 FROM job_decisions WHERE job_id = ?", key).fetchone() is None:
                raise NotDecided(f"job {key[0]}: no decision to submit")
            db.execute(
                "INSERT INTO settlements (job_id, tx_hash, submitted_at, submissions) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (job_id) DO UPDATE SET tx_hash = excluded.tx_hash, "
                "submitted_at = excluded.submitted_at, submissions = submissions + 1",
                (key[0], tx_hash, time.time()),
            )
        return self._settlement(key)  # type: ignore[return-value]

    def mark_settled(self, job_id: int, tx_hash: str | None = None) -> SettlementStatus:
        """Record that the job is settled on chain (by anyone's transaction); idempotent."""
        key = job_key(job_id)
        with self._write() as db:
            if db.execute("SELECT 1 FROM job_decisions WHERE job_id = ?", key).fetchone() is None:
                raise NotDecided(f"job {key[0]}: no decision to settle")
            db.execute(
                "INSERT INTO settlements (job_id, settled, settled_at, settled_tx) VALUES (?, 1, ?, ?) "
                "ON CONFLICT (job_id) DO UPDATE SET settled = 1, "
                "settled_at = coalesce(settled_at, excluded.settled_at), "
                "settled_tx = coalesce(settled_tx, excluded.settled_tx)",
                (key[0], time.time(), tx_hash),
            )
        return self._settlement(key)  # type: ignore[return-value]

    def settlement(self, job_id: int) -> SettlementStatus | None:
        return self._settlement(job_key(job_id))

    def _settlement(self, key: tuple[str, ...]) -> SettlementStatus | None:
        row = self._select_one(
            "SELECT tx_hash, submitted_at, submissions, settled, settled_at, settled_tx"
            " FROM settlements WHERE job_id = ?",
            key,
        )
        if row is None:
            return None
        tx_hash, submitted_at, submissions, settled, settled_at, settled_tx = row
        return SettlementStatus(int(key[0]), tx_hash, submitted_at, submissions, bool(settled), settled_at, settled_tx)

    def unsettled_job_ids(self) -> list[int]:
        """Decided jobs not yet known to be settled, ascending."""
        rows = self._select(
            "SELECT d.job_id FROM job_decisions d LEFT JOIN settlements s ON s.job_id = d.job_id "
            "WHERE coalesce(s.settled, 0) = 0"
        )
        return sorted(int(r[0]) for r in rows)

    # ---------------------------------------------------------------- watched jobs

    def watch_job(self, job_id: int, provider: str, started_at: int) -> None:
        """Follow a running job until :meth:`unwatch_job`; idempotent (an event seen again)."""
        key = job_key(job_id)
        provider = to_checksum_address(provider)
        started_at = _uint(started_at, 63, "started_at")
        with self._write() as db:
            db.execute(
                "INSERT INTO watched_jobs (job_id, provider, started_at, watched_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (job_id) DO NOTHING",
                (key[0], provider, started_at, time.time()),
            )

    def unwatch_job(self, job_id: int) -> None:
        """The job ended on chain (or can no longer be followed); idempotent."""
        with self._write() as db:
            db.execute("DELETE FROM watched_jobs WHERE job_id = ?", job_key(job_id))

    def watched_jobs(self) -> list[WatchedJob]:
        """The jobs being followed, by ascending id."""
        rows = self._select("SELECT job_id, provider, started_at FROM watched_jobs")
        return sorted((WatchedJob(int(r[0]), r[1], r[2]) for r in rows), key=lambda job: job.job_id)

    # ---------------------------------------------------------------- challenges run

    def record_challenge(self, job_id: int, challenge: ChallengeRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO job_challenges (job_id, kind, at, measured_gops, required_gops, verdict) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job_key(job_id)[0],
                    challenge.kind,
                    challenge.at,
                    challenge.measured_gops,
                    challenge.required_gops,
                    challenge.verdict,
                ),
            )

    def job_challenges(self, job_id: int) -> list[ChallengeRecord]:
        """The challenges this oracle ran against ``job_id``'s provider, oldest first."""
        rows = self._select(
            "SELECT kind, at, measured_gops, required_gops, verdict FROM job_challenges WHERE job_id = ? ORDER BY at",
            job_key(job_id),
        )
        return [ChallengeRecord(*row) for row in rows]

    def last_settled_at(self) -> float | None:
        """When this oracle last saw one of its decided jobs settled (unix seconds), or None."""
        row = self._select_one("SELECT max(settled_at) FROM settlements WHERE settled = 1")
        return None if row is None or row[0] is None else float(row[0])

    # ---------------------------------------------------------------- cursors

    def cursor(self, name: str) -> Cursor | None:
        row = self._select_one("SELECT block, block_hash, updated_at FROM cursors WHERE name = ?", (name,))
        return None if row is None else Cursor(name, row[0], row[1], row[2])

    def set_cursor(self, name: str, block: int, block_hash: str | None = None) -> Cursor:
        """Record the last block the follower named ``name`` has fully processed."""
        if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < 2**63:
            raise ValueError("cursor block: expected an int in [0, 2**63)")
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT INTO cursors (name, block, block_hash, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET block = excluded.block, block_hash = excluded.block_hash, "
                "updated_at = excluded.updated_at",
                (name, block, block_hash, now),
            )
        return Cursor(name, block, block_hash, now)

    # ---------------------------------------------------------------- health

    def counts(self) -> StoreCounts:
        with self._read() as db:

            def one(sql: str, *args: object) -> int:
                return int(db.execute(sql, args).fetchone()[0])

            return StoreCounts(
                job_decisions=one("SELECT count(*) FROM job_decisions"),
                hardware_decisions=one("SELECT count(*) FROM hardware_decisions"),
                signed_job_decisions=one("SELECT count(*) FROM job_decisions WHERE signature IS NOT NULL"),
                signatures=one("SELECT count(*) FROM signatures"),
                peer_signatures=one("SELECT count(*) FROM signatures WHERE signer != ?", self.oracle),
                settled_jobs=one("SELECT count(*) FROM settlements WHERE settled = 1"),
            )


# --------------------------------------------------------------------------- helpers


def _signature_bytes(signature: bytes | str) -> bytes:
    if isinstance(signature, str):
        text = signature[2:] if signature.startswith(("0x", "0X")) else signature
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise InvalidSignature("signature: not a hex string") from None
    return bytes(signature)


def _attestation(kind: ReportKind, report_json: str, signature: bytes, path: bytes | None) -> Attestation:
    """An observed_signatures row's attestation: the path's 32-byte siblings, or None (alone)."""
    siblings = None if path is None else tuple(path[i : i + 32] for i in range(0, len(path), 32))
    return Attestation(_decode_report(kind, report_json), bytes(signature), siblings)


def _recover(domain: Domain, report: Report, signature: bytes | str) -> str:
    try:
        return eip712.recover(domain, report, signature)
    except ValueError as exc:
        raise InvalidSignature(str(exc)) from None


def _split_sql(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; run statement by statement instead.
    statements, buffer = [], ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        buffer += line + "\n"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise AssertionError(f"incomplete migration statement: {buffer!r}")
    return statements
