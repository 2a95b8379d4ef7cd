"""OracleBonds.prove_*_equivocation: two different reports for one job (or one hardware
measurement) signed by one member in one epoch cost the member its bond and its seat in later
committees; nothing an honest member signs can be turned into such a proof."""

from __future__ import annotations

import ape
import pytest

from gpumarket.chain.market import JobAttestation
from gpumarket.signing.batch import ReportTree
from gpumarket.signing.eip712 import Outcome, sign, to_tuple
from helpers.committee import Committee, hardware_report, job_report
from unit.companions import BOND, sign_batch
from unit.expectations import emitted

JOB = 7
PROVIDER = "0x" + "ab" * 20


def completed(epoch=1, job_id=JOB):
    return job_report(job_id, PROVIDER, Outcome.COMPLETED, 600, epoch=epoch)


def failed(epoch=1, job_id=JOB):
    return job_report(
        job_id, PROVIDER, Outcome.FAILED, 0, epoch=epoch, result_hash=b"\x00" * 32, evidence_hash=b"\x00" * 32
    )


@pytest.fixture
def alone(committee, domain):
    """Builder: member `index`'s attestation of `report` signed alone."""

    def do(report, index=0):
        return JobAttestation(report=report, signature=sign(committee.keys[index], domain, report))

    return do


@pytest.fixture
def in_batch(committee, domain):
    """Builder: member `index`'s attestation of `report` as a leaf of a batch with `others`."""

    def do(report, others=(), index=0):
        tree = ReportTree([report, *others])
        signature = sign_batch(domain, [committee.keys[index]], tree)[0]
        return JobAttestation(report=report, signature=signature, path=tuple(tree.path(report)))

    return do


def prove(bonds, member, first, second, sender):
    return bonds.prove_job_equivocation(member, first.to_tuple(), second.to_tuple(), sender=sender)


@pytest.mark.parametrize("shape", ["alone-alone", "alone-batch", "batch-batch"])
def test_two_reports_for_one_job_cost_the_bond(
    bonds, market, treasury, keeper, committee, bonded, alone, in_batch, stake_books, shape
):
    member = bonded(0)
    other = completed(job_id=JOB + 1)
    first = alone(completed()) if shape != "batch-batch" else in_batch(completed(), [other])
    second = alone(failed()) if shape == "alone-alone" else in_batch(failed(), [other, completed(job_id=JOB + 2)])
    tx = prove(bonds, member, first, second, keeper)
    share = BOND // 10
    assert tx.return_value == BOND
    assert bonds.bond_of(member) == 0
    assert bonds.flagged(member)
    assert not bonds.eligible(member)
    assert bonds.claimable(keeper) == share
    assert bonds.claimable(treasury) == BOND - share
    [event] = emitted(tx, bonds.EquivocationSlashed)
    assert (event["member"], event["reporter"], event["kind"], event["slashed"]) == (
        member.address,
        keeper.address,
        "job",
        BOND,
    )
    stake_books()
    bonds.claim(sender=keeper)
    stake_books()


def test_a_flagged_member_cannot_join_a_later_committee(market, bonds, owner, committee, bonded, alone, keeper):
    member = bonded(0)
    for index in (1, 2):
        bonded(index)
    prove(bonds, member, alone(completed()), alone(failed()), keeper)
    with ape.reverts("committee: member not eligible"):
        market.set_committee(committee.addresses, 2, sender=owner)
    market.set_committee(committee.addresses[1:], 2, sender=owner)


def test_the_same_report_twice_is_no_equivocation(bonds, bonded, alone, in_batch, keeper):
    member = bonded(0)
    with ape.reverts("OracleBonds: same report"):
        prove(bonds, member, alone(completed()), in_batch(completed(), [completed(job_id=9)]), keeper)


def test_reports_of_different_jobs_or_epochs_are_no_equivocation(bonds, bonded, alone, keeper):
    member = bonded(0)
    with ape.reverts("OracleBonds: different jobs"):
        prove(bonds, member, alone(completed()), alone(failed(job_id=JOB + 1)), keeper)
    with ape.reverts("OracleBonds: different epochs"):
        prove(bonds, member, alone(completed()), alone(failed(epoch=2)), keeper)


def test_another_members_signature_cannot_frame_a_member(bonds, bonded, alone, keeper, committee):
    member = bonded(0)
    with ape.reverts("OracleBonds: second not signed by member"):
        prove(bonds, member, alone(completed()), alone(failed(), index=1), keeper)


def test_a_wrong_path_proves_nothing(bonds, bonded, alone, in_batch, keeper):
    member = bonded(0)
    batched = in_batch(failed(), [completed(job_id=9)])
    broken = JobAttestation(report=batched.report, signature=batched.signature, path=(b"\x01" * 32,))
    with ape.reverts("OracleBonds: second not signed by member"):
        prove(bonds, member, alone(completed()), broken, keeper)


def test_only_members_of_that_epoch_are_slashed(bonds, domain, keeper):
    outsider = Committee.of_size(1, threshold=1, first_index=60)
    a = JobAttestation(report=completed(), signature=sign(outsider.keys[0], domain, completed()))
    b = JobAttestation(report=failed(), signature=sign(outsider.keys[0], domain, failed()))
    with ape.reverts("OracleBonds: not a member of that epoch"):
        prove(bonds, outsider.addresses[0], a, b, keeper)


def test_an_unbonded_first_committee_member_is_still_flagged(bonds, committee, alone, keeper):
    tx = prove(bonds, committee.addresses[1], alone(completed(), index=1), alone(failed(), index=1), keeper)
    assert tx.return_value == 0
    assert bonds.flagged(committee.addresses[1])


def test_one_slash_per_flag_and_governance_clears_it(market, bonds, owner, attacker, bonded, alone, keeper, committee):
    member = bonded(0)
    prove(bonds, member, alone(completed()), alone(failed()), keeper)
    with ape.reverts("OracleBonds: member already flagged"):
        prove(bonds, member, alone(completed()), alone(failed()), keeper)
    with ape.reverts("OracleBonds: caller is not the market owner"):
        bonds.clear_flag(member, sender=attacker)
    bonds.clear_flag(member, sender=owner)
    assert not bonds.flagged(member)
    bonded(0)
    with ape.reverts("OracleBonds: evidence cleared by governance"):
        prove(bonds, member, alone(completed()), alone(failed()), keeper)
    # Evidence of a later epoch counts again.
    bonded(1)
    bonded(2)
    market.set_committee(committee.addresses, 2, sender=owner)
    assert prove(bonds, member, alone(completed(epoch=2)), alone(failed(epoch=2)), keeper).return_value == BOND


def test_two_hardware_reports_of_one_measurement_cost_the_bond(bonds, bonded, committee, domain, keeper):
    member = bonded(0)
    passing = hardware_report(PROVIDER, 1, 1, 20, 10**9, epoch=1)
    failing = hardware_report(PROVIDER, 1, 1, 2, 10**9, epoch=1)
    key = committee.keys[0]
    first = (to_tuple(passing), sign(key, domain, passing))
    second = (to_tuple(failing), sign(key, domain, failing))
    assert bonds.prove_hardware_equivocation(member, first, second, sender=keeper).return_value == BOND


def test_hardware_reports_of_two_measurements_are_no_equivocation(bonds, bonded, committee, domain, keeper):
    member = bonded(0)
    earlier = hardware_report(PROVIDER, 1, 1, 20, 10**9, epoch=1)
    later = hardware_report(PROVIDER, 1, 1, 2, 10**9 + 1, epoch=1)
    key = committee.keys[0]
    with ape.reverts("OracleBonds: different measurements"):
        bonds.prove_hardware_equivocation(
            member,
            (to_tuple(earlier), sign(key, domain, earlier)),
            (to_tuple(later), sign(key, domain, later)),
            sender=keeper,
        )
