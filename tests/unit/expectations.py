"""Expectations shared by the staking, escrow and verification unit tests.

Protocol arithmetic (docs/PROTOCOL.md: every charge rounds against the charged party),
full-field event extraction, and the conservation check over every test role.
Folder conftests re-export the fixtures defined here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers.accounting import assert_conserved
from helpers.constants import BPS

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def ceil_bps(amount: int, bps: int) -> int:
    """amount * bps / 10_000 rounded up: fees, collateral and slashes never round in the payer's favour."""
    return -(-amount * bps // BPS)


def next_tx_at(chain, timestamp: int | None = None) -> int:
    """Pins the block time of the next transaction, and only that one; returns it.

    On ape-titanoboa the pending time follows the wall clock (it can tick between reading
    `chain.pending_timestamp` and sending), and a time set with `chain.pending_timestamp = t`
    is used by the next transaction only, after which the clock returns to wall time.
    Tests that assert exact times pin each transaction they reason about.
    """
    pinned = chain.pending_timestamp if timestamp is None else timestamp
    chain.pending_timestamp = pinned
    return pinned


def emitted(tx, event) -> list[dict]:
    """Every `event` log of `tx`, in order, each with all of its fields (compare with full dicts)."""
    return [dict(log.event_arguments) for log in tx.decode_logs(event)]


@pytest.fixture
def books(
    market, stake_token, payment_token, provider, provider2, client, client2, treasury, keeper, attacker
) -> Callable[[], None]:
    """Checks token balance == free + locked + unbonding + live escrow + claimable, for both tokens."""

    def check() -> None:
        assert_conserved(
            market,
            [stake_token, payment_token],
            [provider, provider2],
            [provider, provider2, client, client2, treasury, keeper, attacker],
        )

    return check
