"""OracleBonds: members post bonds before they can be named; a bond leaves only after its owner
left the committee and waited the withdrawal delay."""

from __future__ import annotations

import ape

from unit.companions import BOND, WITHDRAWAL_DELAY


def test_a_member_needs_a_bond_to_be_named(market, bonds, owner, committee, bonded):
    with ape.reverts("committee: member not eligible"):
        market.set_committee(committee.addresses, 2, sender=owner)
    for index in range(3):
        bonded(index)
    market.set_committee(committee.addresses, 2, sender=owner)
    assert market.epoch() == 2


def test_part_of_a_bond_is_not_enough(bonds, committee, bonded):
    bonded(0, BOND - 1)
    assert not bonds.eligible(committee.addresses[0])
    bonded(0, 1)
    assert bonds.eligible(committee.addresses[0])


def test_a_member_cannot_ask_to_withdraw(bonds, bonded):
    member = bonded(0)
    with ape.reverts("OracleBonds: still a committee member"):
        bonds.request_withdrawal(sender=member)


def test_a_former_member_withdraws_after_the_delay(
    market, bonds, owner, committee, bonded, stake_token, chain, stake_books
):
    member = bonded(0)
    bonds.set_bond_amount(0, sender=owner)
    market.set_committee(committee.addresses[1:], 2, sender=owner)
    bonds.request_withdrawal(sender=member)
    assert not bonds.eligible(member)
    with ape.reverts("OracleBonds: delay not passed"):
        bonds.withdraw(sender=member)
    chain.pending_timestamp += WITHDRAWAL_DELAY
    before = stake_token.balanceOf(member)
    bonds.withdraw(sender=member)
    assert stake_token.balanceOf(member) == before + BOND
    assert bonds.bond_of(member) == 0
    stake_books()


def test_a_member_named_again_cannot_withdraw(market, bonds, owner, committee, bonded, chain):
    member = bonded(0)
    bonds.set_bond_amount(0, sender=owner)
    market.set_committee(committee.addresses[1:], 2, sender=owner)
    bonds.request_withdrawal(sender=member)
    # Withdrawing makes it ineligible, so governance cannot name it again meanwhile.
    with ape.reverts("committee: member not eligible"):
        market.set_committee(committee.addresses, 2, sender=owner)
    chain.pending_timestamp += WITHDRAWAL_DELAY
    bonds.withdraw(sender=member)


def test_posting_again_cancels_a_withdrawal(bonds, market, owner, committee, bonded):
    member = bonded(0)
    bonds.set_bond_amount(0, sender=owner)
    market.set_committee(committee.addresses[1:], 2, sender=owner)
    bonds.request_withdrawal(sender=member)
    bonded(0, 1)
    assert bonds.withdrawable_at(member) == 0
    assert bonds.eligible(member)
    with ape.reverts("OracleBonds: withdrawal not requested"):
        bonds.withdraw(sender=member)


def test_governance_sets_the_amount_and_the_delay_within_bounds(bonds, owner, attacker):
    with ape.reverts("OracleBonds: caller is not the market owner"):
        bonds.set_bond_amount(1, sender=attacker)
    bonds.set_bond_amount(7, sender=owner)
    assert bonds.bond_amount() == 7
    with ape.reverts("OracleBonds: delay out of bounds"):
        bonds.set_withdrawal_delay(3_600, sender=owner)
    bonds.set_withdrawal_delay(30 * 86_400, sender=owner)
    assert bonds.withdrawal_delay() == 30 * 86_400


def test_nothing_is_bonded_for_nothing(bonds, keeper):
    with ape.reverts("OracleBonds: zero amount"):
        bonds.post_bond(0, sender=keeper)
    with ape.reverts("OracleBonds: no bond"):
        bonds.request_withdrawal(sender=keeper)
