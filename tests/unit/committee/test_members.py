"""members(): the current epoch's members, in the order governance gave them."""

from __future__ import annotations


def test_returns_members_in_the_given_order(market, owner, next_committee):
    reordered = list(reversed(next_committee.addresses))
    market.set_committee(reordered, next_committee.threshold, sender=owner)
    assert market.members() == reordered


def test_returns_only_the_latest_committee(market, owner, committee, next_committee):
    market.set_committee(next_committee.addresses, next_committee.threshold, sender=owner)
    market.set_committee(committee.addresses[:1], 1, sender=owner)
    assert market.members() == committee.addresses[:1]
