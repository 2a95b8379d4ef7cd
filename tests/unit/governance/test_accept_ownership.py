"""accept_ownership: only the pending owner; then the old owner loses every right."""

from __future__ import annotations

import ape
import pytest

from unit.expectations import ZERO_ADDRESS, emitted


@pytest.mark.parametrize("pending", [False, True], ids=["nothing-pending", "someone-else-pending"])
def test_anyone_but_the_pending_owner_is_refused(market, owner, successor, attacker, pending: bool):
    if pending:
        market.transfer_ownership(successor, sender=owner)
    for caller in (attacker, owner):
        with ape.reverts("ownable_2step: caller is not the new owner"):
            market.accept_ownership(sender=caller)
    assert market.owner() == owner


def test_pending_owner_becomes_owner_and_it_is_logged(market, owner, successor):
    market.transfer_ownership(successor, sender=owner)
    tx = market.accept_ownership(sender=successor)
    assert market.owner() == successor
    assert market.pending_owner() == ZERO_ADDRESS
    assert emitted(tx, market.OwnershipTransferred) == [
        {"previous_owner": owner.address, "new_owner": successor.address}
    ]
    assert len(tx.events) == 1


def test_new_owner_governs_and_old_owner_is_refused(market, owner, successor, committee):
    market.transfer_ownership(successor, sender=owner)
    market.accept_ownership(sender=successor)
    market.set_min_stake(5, sender=successor)
    market.set_committee(committee.addresses, committee.threshold, sender=successor)
    assert market.min_stake() == 5
    with ape.reverts("ownable: caller is not the owner"):
        market.set_min_stake(6, sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        market.transfer_ownership(owner, sender=owner)


def test_acceptance_cannot_be_repeated(market, owner, successor):
    market.transfer_ownership(successor, sender=owner)
    market.accept_ownership(sender=successor)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        market.accept_ownership(sender=successor)
