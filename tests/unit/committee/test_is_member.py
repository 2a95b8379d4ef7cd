"""is_member(): membership of the current epoch only."""

from __future__ import annotations

from unit.expectations import ZERO_ADDRESS


def test_members_and_outsiders(market, committee, next_committee, owner, attacker):
    assert all(market.is_member(member) for member in committee.addresses)
    for outsider in (*next_committee.addresses, owner.address, attacker.address, ZERO_ADDRESS):
        assert not market.is_member(outsider)


def test_replaced_members_stop_being_members(market, owner, committee, next_committee):
    market.set_committee(next_committee.addresses, next_committee.threshold, sender=owner)
    assert all(market.is_member(member) for member in next_committee.addresses)
    assert not any(market.is_member(member) for member in committee.addresses)


def test_member_kept_across_epochs_stays_a_member(market, owner, committee, next_committee):
    kept = committee.addresses[0]
    market.set_committee([kept, *next_committee.addresses[:2]], 2, sender=owner)
    assert market.is_member(kept)
    assert not market.is_member(committee.addresses[1])
