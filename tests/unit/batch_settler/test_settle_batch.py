"""BatchSettler.settle_batch: one committee signature over a Merkle root settles any subset of
its reports, each job once, exactly as escrow.settle would."""

from __future__ import annotations

import ape
import pytest

from gpumarket.signing.batch import ReportTree
from gpumarket.signing.eip712 import Outcome, to_tuple
from helpers.committee import Committee, job_report
from helpers.constants import COMPLETED, FAILED, RUNNING
from unit.companions import sign_batch, submit
from unit.expectations import emitted


@pytest.fixture
def jobs(market, client, client2, provider, ready_provider, running_job, companions):
    """Three running jobs of one provider (4 GPUs, one left for a twin job) for two clients."""
    ready_provider(provider, gpu_count=4)
    return [running_job(c, provider) for c in (client, client2, client)]


def reports_for(market, job_ids, outcome=Outcome.COMPLETED, gpu_seconds=600):
    return [
        job_report(job_id, market.get_job(job_id).provider, outcome, gpu_seconds, epoch=market.epoch())
        for job_id in job_ids
    ]


def test_a_batch_settles_every_job_as_settle_would(
    market, settler, settle, settle_batch, running_job, jobs, books, client, provider
):
    """Each job's settlement equals that of a twin job settled alone with the same report."""
    twin = running_job(client, provider)
    alone = emitted(settle(twin, gpu_seconds=600), market.JobSettled)[0]
    tx = settle_batch(reports_for(market, jobs))
    assert tx.return_value == 3
    assert [market.get_job(j).state for j in jobs] == [COMPLETED] * 3
    settled = sorted(emitted(tx, market.JobSettled), key=lambda e: e["job_id"])
    assert [e["job_id"] for e in settled] == sorted(jobs)
    for event in settled:
        assert {k: v for k, v in event.items() if k != "job_id"} == {k: v for k, v in alone.items() if k != "job_id"}
    assert emitted(tx, settler.BatchSettled)[0]["settled"] == 3
    books()


def test_any_subset_now_and_the_rest_later(market, settle_batch, jobs):
    reports = reports_for(market, jobs)
    first = settle_batch(reports, subset=[reports[1]])
    assert first.return_value == 1
    assert [market.get_job(j).state for j in jobs] == [RUNNING, COMPLETED, RUNNING]
    rest = settle_batch(reports, subset=[reports[0], reports[2]])
    assert rest.return_value == 2
    assert [market.get_job(j).state for j in jobs] == [COMPLETED] * 3


def test_a_job_settled_before_is_skipped_not_reverted(market, settle, settle_batch, jobs):
    settle(jobs[0], gpu_seconds=600)
    tx = settle_batch(reports_for(market, jobs))
    assert tx.return_value == 2
    again = settle_batch(reports_for(market, jobs))
    assert again.return_value == 0
    assert len(emitted(again, market.JobSettled)) == 0


def test_failed_reports_slash_in_a_batch(market, settle_batch, jobs, provider):
    locked_before = market.stake_of(provider).locked
    tx = settle_batch(reports_for(market, jobs, Outcome.FAILED, 0))
    assert [market.get_job(j).state for j in jobs] == [FAILED] * 3
    assert market.stake_of(provider).locked == locked_before - sum(e["slashed"] for e in emitted(tx, market.JobSettled))


def test_a_changed_report_fails_the_root(market, settler, committee, domain, jobs, keeper):
    reports = reports_for(market, jobs)
    tree = ReportTree(reports)
    signatures = sign_batch(domain, committee.keys[:2], tree)
    proof = tree.multiproof(tree.reports)
    inflated = [
        r if r.job_id != jobs[0] else job_report(r.job_id, r.provider, r.outcome, 10**9, r.epoch) for r in proof.reports
    ]
    forged = type(proof)(reports=tuple(inflated), proof=proof.proof, flags=proof.flags)
    with ape.reverts("job_batches: signer not a member"):
        submit(settler, forged, signatures, sender=keeper)


def test_too_few_signatures_or_outsiders_are_refused(market, settler, committee, domain, jobs, keeper):
    tree = ReportTree(reports_for(market, jobs))
    proof = tree.multiproof(tree.reports)
    with ape.reverts("job_batches: not enough signatures"):
        submit(settler, proof, sign_batch(domain, committee.keys[:1], tree), sender=keeper)
    outsiders = Committee.of_size(2, threshold=2, first_index=50)
    with ape.reverts("job_batches: signer not a member"):
        submit(settler, proof, sign_batch(domain, outsiders.keys, tree), sender=keeper)


def test_unsorted_signatures_are_refused(market, settler, committee, domain, jobs, keeper):
    tree = ReportTree(reports_for(market, jobs))
    signatures = sign_batch(domain, committee.keys[:2], tree)
    with ape.reverts("job_batches: signers not ascending"):
        submit(settler, tree.multiproof(tree.reports), signatures[::-1], sender=keeper)


def test_a_former_committee_cannot_sign_batches(market, owner, bonds, settle_batch, jobs):
    reports = reports_for(market, jobs)
    bonds.set_bond_amount(0, sender=owner)  # the new members hold no bond
    market.set_committee(Committee.of_size(3, threshold=2, first_index=20).addresses, 2, sender=owner)
    with ape.reverts("job_batches: wrong epoch"):
        settle_batch(reports)


def test_reports_of_two_epochs_are_refused(market, settler, committee, domain, jobs, keeper):
    reports = reports_for(market, jobs)
    mixed = [reports[0], job_report(jobs[1], reports[1].provider, epoch=reports[1].epoch + 1)]
    with pytest.raises(ValueError, match="one epoch"):
        ReportTree(mixed)
    # A tree built by hand around the check still fails on chain.
    tree = ReportTree(reports[:1])
    proof = tree.multiproof(tree.reports)
    both = type(proof)(reports=(reports[0], mixed[1]), proof=(), flags=(True,))
    with ape.reverts("BatchSettler: reports of different epochs"):
        submit(settler, both, sign_batch(domain, committee.keys[:2], tree), sender=keeper)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # The flags' number is implied (leaves + proof hashes - 1), so a hash added to the
        # proof is hashed in as one more node: a root the committee never signed.
        ("extra_proof", "job_batches: signer not a member"),
        # A flag bit past the last node.
        ("flag_without_leaf", "job_batches: bad multiproof shape"),
    ],
)
def test_malformed_multiproofs_are_refused(market, settler, committee, domain, jobs, keeper, change, reason):
    tree = ReportTree(reports_for(market, jobs))
    proof = tree.multiproof(tree.reports[:1])
    signatures = sign_batch(domain, committee.keys[:2], tree)
    if change == "extra_proof":
        bad = type(proof)(reports=proof.reports, proof=(*proof.proof, b"\x01" * 32), flags=proof.flags)
    else:
        bad = type(proof)(reports=proof.reports, proof=proof.proof, flags=(*proof.flags, True))
    with ape.reverts(reason):
        submit(settler, bad, signatures, sender=keeper)


def test_a_flag_cannot_read_a_hash_not_yet_computed(market, settler, committee, domain, jobs, keeper):
    tree = ReportTree(reports_for(market, jobs))
    proof = tree.multiproof(tree.reports[:1])
    # Two flags asking for known hashes where only one leaf is known: the second read is of
    # a hash not computed yet, which the bounds-checked array refuses.
    bad = type(proof)(reports=proof.reports, proof=proof.proof[2:], flags=(True, True, *proof.flags[2:]))
    with ape.reverts():
        submit(settler, bad, sign_batch(domain, committee.keys[:2], tree), sender=keeper)


def test_only_the_settler_applies_verified_reports(market, attacker, jobs):
    report = reports_for(market, jobs)[0]
    with ape.reverts("escrow: caller not batch settler"):
        market.settle_verified([to_tuple(report)], sender=attacker)


def test_an_empty_batch_is_refused(settler, keeper):
    with ape.reverts("BatchSettler: no reports"):
        settler.settle_batch([], [], 0, [], sender=keeper)


def test_interleaved_providers_and_failures_credit_everyone_as_settling_each_alone(
    market,
    payment_token,
    settle_batch,
    running_job,
    ready_provider,
    books,
    provider,
    provider2,
    client,
    client2,
    treasury,
):
    """The market writes a provider's shared words once per run of its jobs in a batch; the
    sums must equal what each job's own settlement would credit (the JobSettled amounts)."""
    ready_provider(provider, gpu_count=4)
    ready_provider(provider2, gpu_count=4)
    owners = [(client, provider), (client2, provider2), (client, provider), (client2, provider), (client, provider2)]
    jobs = [running_job(c, p) for c, p in owners]
    outcomes = [Outcome.COMPLETED, Outcome.COMPLETED, Outcome.FAILED, Outcome.COMPLETED, Outcome.FAILED]
    reports = [
        job_report(j, market.get_job(j).provider, outcome, 500, epoch=market.epoch())
        for j, outcome in zip(jobs, outcomes, strict=True)
    ]
    collateral = {j: market.get_job(j).collateral for j in jobs}
    payees = [provider, provider2, client, client2, treasury]
    claimable_before = {a.address: market.claimable(payment_token, a) for a in payees}
    stake_before = {p.address: market.stake_of(p) for p in (provider, provider2)}

    tx = settle_batch(reports)

    assert tx.return_value == 5 and [market.get_job(j).state for j in jobs] == [
        COMPLETED,
        COMPLETED,
        FAILED,
        COMPLETED,
        FAILED,
    ]
    events = {e["job_id"]: e for e in emitted(tx, market.JobSettled)}
    for p in (provider, provider2):
        own = [j for j, (_, q) in zip(jobs, owners, strict=True) if q == p]
        paid = sum(events[j]["provider_payment"] for j in own)
        assert market.claimable(payment_token, p) - claimable_before[p.address] == paid
        stake = market.stake_of(p)
        assert stake.locked == stake_before[p.address].locked - sum(collateral[j] for j in own)
        assert stake.free == stake_before[p.address].free + sum(collateral[j] - events[j]["slashed"] for j in own)
        assert market.gpus_in_use(p) == 0
    for c in (client, client2):
        refunds = sum(events[j]["client_refund"] for j, (k, _) in zip(jobs, owners, strict=True) if k == c)
        assert market.claimable(payment_token, c) - claimable_before[c.address] == refunds
    fees = sum(e["protocol_fee"] for e in events.values())
    assert market.claimable(payment_token, treasury) - claimable_before[treasury.address] == fees
    books()
