"""No replay across chain, deployment, epoch or job (docs/PROTOCOL.md, Committee and signatures).

Each replay is followed by the control that the right signatures for the right report
still pass, so a revert can only come from what was replayed.
"""

from __future__ import annotations

from dataclasses import replace

import ape
import pytest

from gpumarket.signing.eip712 import Domain, Outcome
from helpers.committee import Committee
from helpers.constants import DAY, HOUR, RUNNING

KINDS = ["job", "hardware"]


def test_a_report_signed_for_another_chain_is_void(case, committee):
    other_chain = Domain(chain_id=case.kit.domain.chain_id + 1, verifying_contract=case.kit.market.address)
    members = committee.keys[: committee.threshold]
    with ape.reverts("committee: signer not a member"):
        case.submit(case.sign(members, domain=other_chain))
    case.assert_accepted(case.sign(members))


@pytest.mark.parametrize("kind", KINDS)
def test_a_report_signed_for_another_deployment_is_void(
    kind, make_case, make_kit, root_kit, stake_token, payment_token, committee
):
    # Same tokens, same committee, same chain: only verifyingContract tells A from B.
    market_b = make_kit(stake_token, payment_token)
    case_a = make_case(root_kit, kind)
    case_b = make_case(market_b, kind)  # puts B in the state where case_a's report applies too
    members = committee.keys[: committee.threshold]
    signed_for_a = case_a.sign(members)
    with ape.reverts("committee: signer not a member"):
        case_b.submit(signed_for_a, report=case_a.report)
    case_a.assert_accepted(signed_for_a)
    # The report itself was valid on B: signed for B, it is accepted there.
    case_b.assert_accepted(case_b.sign(members, report=case_a.report), report=case_a.report)


def test_a_report_of_an_earlier_epoch_is_void(case, committee, market, owner):
    members = committee.keys[: committee.threshold]
    old_signatures = case.sign(members)
    # The same members again: only the epoch changes.
    market.set_committee(committee.addresses, committee.threshold, sender=owner)
    assert market.epoch() == case.report.epoch + 1
    with ape.reverts("committee: wrong epoch"):
        case.submit(old_signatures)
    # Relabelling the old report with the new epoch breaks its signatures.
    relabelled = replace(case.report, epoch=market.epoch())
    with ape.reverts("committee: signer not a member"):
        case.submit(old_signatures, report=relabelled)
    case.assert_accepted(case.sign(members, report=relabelled), report=relabelled)


def test_former_members_cannot_sign_for_the_new_epoch(case, committee, market, owner):
    successor = Committee.of_size(3, threshold=2, first_index=100)
    market.set_committee(successor.addresses, successor.threshold, sender=owner)
    report = replace(case.report, epoch=market.epoch())
    with ape.reverts("committee: signer not a member"):
        case.submit(case.sign(committee.keys[: committee.threshold], report=report), report=report)
    case.assert_accepted(case.sign(successor.keys[: successor.threshold], report=report), report=report)


def test_a_job_report_does_not_settle_another_job(root_kit, client, provider, committee, market):
    root_kit.ready_provider(provider, gpu_count=2)
    first = root_kit.running_job(client, provider)
    second = root_kit.running_job(client, provider)
    report = root_kit.job_report(first, Outcome.COMPLETED, gpu_seconds=60)
    signatures = root_kit.committee.sign(root_kit.domain, report)
    with ape.reverts("committee: signer not a member"):
        market.settle(replace(report, job_id=second), signatures, sender=root_kit.keeper)
    assert market.get_job(second).state == RUNNING
    market.settle(report, signatures, sender=root_kit.keeper)
    # And the report is spent: the same submission again finds the job settled.
    with ape.reverts("escrow: job not running"):
        market.settle(report, signatures, sender=root_kit.keeper)


def test_a_hardware_report_applies_once(root_kit, provider, market):
    root_kit.register(provider)
    report = root_kit.hardware_report(provider)
    root_kit.submit_hardware(report)
    with ape.reverts("verification: stale report"):
        root_kit.submit_hardware(report)


def test_an_older_passing_report_cannot_undo_a_newer_failing_one(root_kit, provider, market):
    root_kit.register(provider)
    # Both at most a day ahead (HARDWARE_VALIDITY), the failing one valid at least an hour later.
    passing = root_kit.hardware_report(provider, valid_for=DAY - HOUR)
    failing = root_kit.hardware_report(provider, measured=0, valid_for=DAY)
    assert failing.valid_until > passing.valid_until
    root_kit.submit_hardware(passing)
    root_kit.submit_hardware(failing)
    assert not market.is_verified(provider)
    with ape.reverts("verification: stale report"):
        root_kit.submit_hardware(passing)
    assert not market.is_verified(provider)
