"""set_committee: replaces members and threshold, starts a new epoch, voids old reports.

Owner only: tests/unit/governance/test_owner_only.py. Every rejected shape of committee:
test_committee_rules.py.
"""

from __future__ import annotations

import ape

from unit.expectations import emitted


def test_replaces_committee_and_logs_the_new_epoch(market, owner, next_committee):
    tx = market.set_committee(next_committee.addresses, next_committee.threshold, sender=owner)
    assert market.members() == next_committee.addresses
    assert market.threshold() == next_committee.threshold
    assert market.epoch() == 2
    assert emitted(tx, market.CommitteeChanged) == [
        {"epoch": 2, "members": next_committee.addresses, "threshold": next_committee.threshold}
    ]
    assert len(tx.events) == 1


def test_every_call_starts_a_new_epoch_even_with_the_same_committee(market, owner, committee):
    for expected_epoch in (2, 3, 4):
        tx = market.set_committee(committee.addresses, committee.threshold, sender=owner)
        assert market.epoch() == expected_epoch
        assert emitted(tx, market.CommitteeChanged)[0]["epoch"] == expected_epoch


def test_threshold_alone_can_change(market, owner, committee):
    market.set_committee(committee.addresses, 3, sender=owner)
    assert market.threshold() == 3
    assert market.members() == committee.addresses


def test_report_signed_for_the_previous_epoch_is_void(market, owner, committee, keeper, signed_hardware_report):
    report, signatures = signed_hardware_report(committee, epoch=1)
    market.set_committee(committee.addresses, committee.threshold, sender=owner)
    with ape.reverts("committee: wrong epoch"):
        market.submit_hardware_report(report, signatures, sender=keeper)


def test_former_members_cannot_sign_for_the_new_epoch(
    market, owner, committee, next_committee, keeper, provider, signed_hardware_report
):
    market.set_committee(next_committee.addresses, next_committee.threshold, sender=owner)
    # All three former members sign, so only their membership can fail the 3-of-4 quorum.
    report, old_signatures = signed_hardware_report(committee, epoch=2, signers=3)
    with ape.reverts("committee: signer not a member"):
        market.submit_hardware_report(report, old_signatures, sender=keeper)
    # The new members' signatures on the same report do verify.
    report, new_signatures = signed_hardware_report(next_committee, epoch=2)
    market.submit_hardware_report(report, new_signatures, sender=keeper)
    assert market.is_verified(provider)


def test_raised_threshold_needs_more_signatures(market, owner, committee, keeper, signed_hardware_report):
    market.set_committee(committee.addresses, 3, sender=owner)
    report, two_signatures = signed_hardware_report(committee, epoch=2)
    assert len(two_signatures) == 2
    with ape.reverts("committee: not enough signatures"):
        market.submit_hardware_report(report, two_signatures, sender=keeper)
