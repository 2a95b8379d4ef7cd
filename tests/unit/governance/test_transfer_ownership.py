"""transfer_ownership: step one of two; nothing changes hands until accept_ownership."""

from __future__ import annotations

import ape

from unit.expectations import ZERO_ADDRESS, emitted


def test_sets_pending_owner_and_logs_it(market, owner, successor):
    tx = market.transfer_ownership(successor, sender=owner)
    assert market.pending_owner() == successor
    assert emitted(tx, market.OwnershipTransferStarted) == [
        {"previous_owner": owner.address, "new_owner": successor.address}
    ]
    assert len(tx.events) == 1


def test_owner_keeps_control_until_acceptance(market, owner, successor):
    market.transfer_ownership(successor, sender=owner)
    assert market.owner() == owner
    market.set_protocol_fee_bps(100, sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        market.set_protocol_fee_bps(200, sender=successor)
    assert market.protocol_fee_bps() == 100


def test_a_new_transfer_replaces_the_pending_owner(market, owner, successor, keeper):
    market.transfer_ownership(successor, sender=owner)
    market.transfer_ownership(keeper, sender=owner)
    assert market.pending_owner() == keeper
    with ape.reverts("ownable_2step: caller is not the new owner"):
        market.accept_ownership(sender=successor)


def test_transfer_to_zero_cancels_the_pending_transfer(market, owner, successor):
    market.transfer_ownership(successor, sender=owner)
    tx = market.transfer_ownership(ZERO_ADDRESS, sender=owner)
    assert market.pending_owner() == ZERO_ADDRESS
    assert emitted(tx, market.OwnershipTransferStarted) == [
        {"previous_owner": owner.address, "new_owner": ZERO_ADDRESS}
    ]
    with ape.reverts("ownable_2step: caller is not the new owner"):
        market.accept_ownership(sender=successor)
    assert market.owner() == owner
