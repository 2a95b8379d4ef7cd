"""Follow a market's events with a confirmation depth, resumably, exactly once per event.

    def on_event(event: MarketEvent, db: sqlite3.Connection) -> None:
        ...                                     # e.g. db.execute("INSERT INTO jobs ...")

    follower = EventFollower(w3, market.address, "oracle.sqlite", on_event,
                             start_block=deployment.block, config=FollowerConfig(confirmations=2))
    follower.poll_once()                        # or follower.run(stop_event) in a thread

Confirmation depth: only blocks at or below head - confirmations are read, so an event is
seen once its block is that deep. Logs are fetched in ranges of at most max_block_range
blocks, decoded into gpumarket.chain.events dataclasses and handed to the handler in
chain order (block, log index).

Exactly once: each event is handled inside an SQLite transaction (BEGIN IMMEDIATE) on the
follower's own database, which also records the event's (tx hash, log index); the handler
gets that connection, so what it writes there commits atomically with the record. An
event already recorded is never handed out again, and the cursor (last fully processed
block, with its hash) is stored after each range, so a restart resumes where it stopped
without missing or repeating an event. A handler with effects outside that database
(an HTTP call, a transaction) sees an event again only if the process died between the
effect and the commit: key such effects by `event.key`.

A handler that raises rolls its transaction back; the event is offered again on the next
poll (run() gives up after max_handler_failures in a row, raising HandlerError).

The node: every request is retried with backoff (RetryPolicy, bounded) when the node is
unreachable, and run() survives max_outages consecutive failed polls before raising
ChainUnavailable. At each poll the cursor's block hash is checked against the node: a
different chain (a restarted node without its state, a reorg deeper than the confirmation
depth) raises ChainMismatch instead of silently following another history.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from web3 import Web3
from web3.exceptions import BlockNotFound

from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import RetryPolicy, call_with_retry
from gpumarket.chain.errors import ChainError, ChainMismatch, ChainUnavailable
from gpumarket.chain.events import EVENT_TYPES, EventDecoder, MarketEvent

__all__ = ["Cursor", "EventFollower", "FollowerConfig", "Handler", "HandlerError"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[MarketEvent, sqlite3.Connection], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS follower_cursor (
    stream TEXT PRIMARY KEY,
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    block INTEGER NOT NULL,
    block_hash BLOB
);
CREATE TABLE IF NOT EXISTS follower_handled (
    stream TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (stream, tx_hash, log_index)
);
"""


class HandlerError(ChainError):
    """The event handler raised; the event stays unprocessed (see `event`, and __cause__)."""

    def __init__(self, event: MarketEvent, error: BaseException) -> None:
        self.event = event
        super().__init__(f"handler failed on {event.name} {event.key}: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class FollowerConfig:
    """confirmations: blocks an event's block must be below head; max_block_range: blocks per
    eth_getLogs; max_ranges_per_poll bounds one poll's work; events: names of the events to
    hand out (None: all); retry: per-request backoff while the node is unreachable."""

    confirmations: int = 2
    max_block_range: int = 500
    max_ranges_per_poll: int = 20
    poll_interval: float = 0.5
    events: frozenset[str] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_outages: int = 3
    max_handler_failures: int = 3

    def __post_init__(self) -> None:
        if self.confirmations < 0 or self.max_block_range < 1 or self.max_ranges_per_poll < 1:
            raise ValueError(f"invalid follower config {self}")


@dataclass(frozen=True)
class Cursor:
    """The last fully processed block (-1 before the first) and its hash."""

    block: int
    block_hash: bytes | None


class EventFollower:
    """Follows one market's events into one handler; see the module docstring.

    `stream` names the subscription inside the database (a service following the same
    market twice, for different purposes, uses two names). The database is opened in WAL
    mode; the follower's connection is usable from any one thread at a time.
    """

    def __init__(
        self,
        w3: Web3,
        market: str,
        db_path: str | Path,
        handler: Handler,
        *,
        start_block: int = 0,
        config: FollowerConfig | None = None,
        stream: str = "market",
        abi: list[dict[str, Any]] | None = None,
    ) -> None:
        self.w3 = w3
        self.market = Web3.to_checksum_address(market)
        self.handler = handler
        self.config = config or FollowerConfig()
        self.start_block = max(0, start_block)
        self._decoder = EventDecoder(w3, abi if abi is not None else load_artifacts()["GpuMarket"].abi)
        self._topics = self._topic_filter(self.config.events)
        # Re-entrant: poll_once reads the cursor under it; every use of the connection holds it.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._chain_id = self._retry(lambda: int(w3.eth.chain_id), "eth_chainId")
        self.stream = f"{stream}:{self._chain_id}:{self.market}"

    def __repr__(self) -> str:
        return f"EventFollower({self.stream}, cursor={self.cursor.block})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _topic_filter(self, names: Collection[str] | None) -> list[list[str]] | None:
        if names is None:
            return None
        unknown = set(names) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown events {sorted(unknown)}")
        topics = [topic for topic in self._decoder.topics if self._decoder.event_name(topic) in names]
        return [["0x" + topic.hex() for topic in topics]]

    # ------------------------------------------------------------------ cursor

    @property
    def cursor(self) -> Cursor:
        """The stored cursor; before the first poll, start_block - 1 (a stored cursor wins
        over start_block)."""
        with self._lock:
            row = self._db.execute(
                "SELECT chain_id, market, block, block_hash FROM follower_cursor WHERE stream = ?", (self.stream,)
            ).fetchone()
        if row is None:
            return Cursor(block=self.start_block - 1, block_hash=None)
        return Cursor(block=int(row[2]), block_hash=None if row[3] is None else bytes(row[3]))

    def _store_cursor(self, block: int, block_hash: bytes) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT INTO follower_cursor (stream, chain_id, market, block, block_hash) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(stream) DO UPDATE SET block = excluded.block, block_hash = excluded.block_hash",
                (self.stream, self._chain_id, self.market, block, block_hash),
            )
            # Blocks up to the cursor are never read again: their records are not needed.
            self._db.execute("DELETE FROM follower_handled WHERE stream = ? AND block <= ?", (self.stream, block))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ polling

    def _retry(self, operation: Callable[[], T], what: str) -> T:
        return call_with_retry(operation, self.config.retry, what=what)

    def _block_hash(self, number: int) -> bytes:
        return bytes(self._retry(lambda: self.w3.eth.get_block(number)["hash"], "eth_getBlockByNumber"))

    def _check_same_chain(self, cursor: Cursor, head: int) -> None:
        if cursor.block_hash is None:
            return
        if cursor.block > head:
            raise ChainMismatch(f"{self.stream}: the node's head {head} is below the cursor {cursor.block}")
        try:
            block = self._retry(lambda: self.w3.eth.get_block(cursor.block), "eth_getBlockByNumber")
        except BlockNotFound:
            raise ChainMismatch(f"{self.stream}: the node has no block {cursor.block}") from None
        if bytes(block["hash"]) != cursor.block_hash:
            raise ChainMismatch(
                f"{self.stream}: block {cursor.block} is 0x{bytes(block['hash']).hex()} on the node, "
                f"0x{cursor.block_hash.hex()} when it was processed"
            )

    def poll_once(self) -> int:
        """Process every confirmed block not processed yet (at most max_ranges_per_poll
        ranges); returns the number of events handed to the handler."""
        with self._lock:
            head = self._retry(lambda: int(self.w3.eth.block_number), "eth_blockNumber")
            cursor = self.cursor
            self._check_same_chain(cursor, head)
            safe = head - self.config.confirmations
            delivered = 0
            for _ in range(self.config.max_ranges_per_poll):
                if cursor.block >= safe:
                    break
                low = cursor.block + 1
                high = min(safe, low + self.config.max_block_range - 1)
                delivered += self._process_range(low, high)
                high_hash = self._block_hash(high)
                self._store_cursor(high, high_hash)
                cursor = Cursor(high, high_hash)
            return delivered

    def _process_range(self, low: int, high: int) -> int:
        query: dict[str, Any] = {"address": self.market, "fromBlock": low, "toBlock": high}
        if self._topics is not None:
            query["topics"] = self._topics
        raw_logs = self._retry(lambda: self.w3.eth.get_logs(query), "eth_getLogs")  # type: ignore[arg-type]
        ordered = sorted(raw_logs, key=lambda raw: (int(raw["blockNumber"]), int(raw["logIndex"])))
        delivered = 0
        for raw in ordered:
            event = self._decoder.decode(raw)
            if event is None or (self.config.events is not None and event.name not in self.config.events):
                continue
            delivered += self._deliver(event)
        return delivered

    def _deliver(self, event: MarketEvent) -> int:
        tx_hash, log_index = event.key
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seen = self._db.execute(
                "SELECT 1 FROM follower_handled WHERE stream = ? AND tx_hash = ? AND log_index = ?",
                (self.stream, tx_hash, log_index),
            ).fetchone()
            if seen:
                self._db.execute("ROLLBACK")
                return 0
            try:
                self.handler(event, self._db)
            except Exception as error:
                raise HandlerError(event, error) from error
            self._db.execute(
                "INSERT INTO follower_handled (stream, tx_hash, log_index, block) VALUES (?, ?, ?, ?)",
                (self.stream, tx_hash, log_index, event.meta.block_number),
            )
            self._db.execute("COMMIT")
            return 1
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def run(self, stop: threading.Event) -> None:
        """Poll every poll_interval seconds until `stop` is set (see the module docstring)."""
        outages = 0
        handler_failures = 0
        while not stop.is_set():
            try:
                self.poll_once()
                outages = handler_failures = 0
            except ChainUnavailable:
                outages += 1
                if outages >= self.config.max_outages:
                    raise
                log.error("%s: node unavailable (%d/%d)", self.stream, outages, self.config.max_outages)
            except HandlerError as error:
                handler_failures += 1
                if handler_failures >= self.config.max_handler_failures:
                    raise
                log.error("%s: %s (%d/%d)", self.stream, error, handler_failures, self.config.max_handler_failures)
            stop.wait(self.config.poll_interval)
