"""set_treasury: non-zero only, logged, and only future credits follow the change."""

from __future__ import annotations

import ape

from gpumarket.signing.eip712 import Outcome
from helpers.constants import PRICE
from unit.expectations import ZERO_ADDRESS, ceil_bps, emitted


def completed_job_fee(market, running_job, settle, client, provider, gpu_seconds: int) -> int:
    """Runs one job to COMPLETED and returns the protocol fee docs/PROTOCOL.md says it earns."""
    job_id = running_job(client, provider)
    settle(job_id, Outcome.COMPLETED, gpu_seconds=gpu_seconds)
    return ceil_bps(PRICE * gpu_seconds, market.protocol_fee_bps())


def test_zero_treasury_reverts(market, owner, treasury):
    with ape.reverts("governance: zero treasury"):
        market.set_treasury(ZERO_ADDRESS, sender=owner)
    assert market.treasury() == treasury


def test_sets_treasury_and_logs_old_and_new(market, owner, treasury, successor):
    tx = market.set_treasury(successor, sender=owner)
    assert market.treasury() == successor
    assert emitted(tx, market.TreasuryChanged) == [
        {"old_treasury": treasury.address, "new_treasury": successor.address}
    ]
    assert len(tx.events) == 1


def test_second_change_logs_the_previous_successor_as_old(market, owner, successor, keeper):
    market.set_treasury(successor, sender=owner)
    tx = market.set_treasury(keeper, sender=owner)
    assert emitted(tx, market.TreasuryChanged) == [{"old_treasury": successor.address, "new_treasury": keeper.address}]


def test_credited_fees_stay_with_old_treasury_and_new_fees_go_to_new(
    market, owner, treasury, successor, client, provider, running_job, settle, payment_token, books
):
    old_fee = completed_job_fee(market, running_job, settle, client, provider, gpu_seconds=1_800)
    market.set_treasury(successor, sender=owner)
    new_fee = completed_job_fee(market, running_job, settle, client, provider, gpu_seconds=900)

    assert old_fee > 0 and new_fee > 0
    assert market.claimable(payment_token, treasury) == old_fee
    assert market.claimable(payment_token, successor) == new_fee
    # The old treasury can still pull what it earned before the change.
    balance_before = payment_token.balanceOf(treasury)
    market.claim(payment_token, sender=treasury)
    assert payment_token.balanceOf(treasury) == balance_before + old_fee
    books()
