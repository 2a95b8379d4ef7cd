"""Keep an oracle's DecisionStore in step with the chain's committee.

    sync = CommitteeSync(store, market)
    sync.load_current()                       # at startup: the chain's epoch, members, threshold
    follower = EventFollower(w3, market.address, "follower.db", sync.handle, start_block=...)
    follower.run(stop)                        # every CommitteeChanged -> store.set_committee

A fresh oracle learns its epoch from the chain at startup (the events may lie before its
follower's start block); afterwards each ``CommitteeChanged`` event (at the follower's
confirmation depth) records the new epoch. ``set_committee`` is idempotent, so an event seen
again after a crash (the store and the follower's database commit separately) is harmless.
Other events are ignored here: :meth:`CommitteeSync.handle` is meant to be called from the
oracle's one follower handler alongside the others.
"""

from __future__ import annotations

import logging
import sqlite3

from gpumarket.chain.events import CommitteeChanged, MarketEvent
from gpumarket.chain.market import BlockId, Market
from gpumarket.oracle.store import CommitteeInfo, DecisionStore

__all__ = ["CommitteeSync"]

log = logging.getLogger(__name__)


class CommitteeSync:
    """Feeds the store with the chain's committees (startup read plus CommitteeChanged events)."""

    def __init__(self, store: DecisionStore, market: Market) -> None:
        self.store = store
        self.market = market

    def load_current(self, block: BlockId = "latest") -> CommitteeInfo:
        """Record the committee the chain has at ``block`` and return it."""
        epoch = self.market.epoch(block=block)
        members = self.market.members(block=block)
        threshold = self.market.threshold(block=block)
        info = self.store.set_committee(epoch, members, threshold)
        log.info("committee of epoch %d: %d members, threshold %d", epoch, len(members), threshold)
        return info

    def handle(self, event: MarketEvent, db: sqlite3.Connection | None = None) -> None:
        """An EventFollower handler: records CommitteeChanged events, ignores the rest."""
        if isinstance(event, CommitteeChanged):
            self.store.set_committee(event.epoch, list(event.members), event.threshold)
            log.info("committee changed: epoch %d, threshold %d", event.epoch, event.threshold)
