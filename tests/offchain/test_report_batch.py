"""gpumarket.signing.batch: the Merkle tree of a batch of job reports and its multiproofs, held to
their own checker (the contracts' algorithm, tests/unit/batch_settler holds the contract to it)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpumarket.signing.batch import ReportTree, hash_pair, multiproof_root, path_root
from gpumarket.signing.eip712 import JobReport, JobReportBatch, Outcome, struct_hash

PROVIDER = "0x" + "cd" * 20


def report(job_id: int, epoch: int = 1, gpu_seconds: int = 60, provider: str = PROVIDER) -> JobReport:
    return JobReport(
        job_id=job_id,
        provider=provider,
        outcome=Outcome.COMPLETED,
        gpu_seconds=gpu_seconds,
        result_hash=b"\x01" * 32,
        evidence_hash=b"\x02" * 32,
        epoch=epoch,
    )


@given(st.integers(1, 70), st.data())
def test_any_subset_proves_against_the_root(count, data):
    reports = [report(i) for i in range(1, count + 1)]
    tree = ReportTree(reports)
    subset = data.draw(st.lists(st.sampled_from(reports), min_size=1, max_size=count, unique=True))
    proof = tree.multiproof(subset)
    assert {r.job_id for r in proof.reports} == {r.job_id for r in subset}
    assert multiproof_root([struct_hash(r) for r in proof.reports], proof.proof, proof.flags) == tree.root
    for one in subset:
        assert path_root(struct_hash(one), tree.path(one)) == tree.root


def test_the_whole_batch_needs_no_proof_hashes():
    tree = ReportTree([report(i) for i in range(1, 33)])
    proof = tree.multiproof(tree.reports)
    assert proof.proof == () and len(proof.flags) == 31


@given(st.lists(st.sampled_from(["0x" + "0a" * 20, PROVIDER, "0x" + "fe" * 20]), min_size=1, max_size=40), st.data())
def test_each_providers_reports_come_together_in_leaf_and_proof_order(providers, data):
    # The market writes a provider's shared words once per run of its jobs in a batch.
    reports = [report(i, provider=p) for i, p in enumerate(providers, start=1)]
    tree = ReportTree(reports)
    order = [int(r.provider, 16) for r in tree.reports]
    assert order == sorted(order)
    subset = data.draw(st.lists(st.sampled_from(reports), min_size=1, max_size=len(reports), unique=True))
    proof = tree.multiproof(subset)
    in_proof = [int(r.provider, 16) for r in proof.reports]
    assert in_proof == sorted(in_proof)
    assert multiproof_root([struct_hash(r) for r in proof.reports], proof.proof, proof.flags) == tree.root


def test_the_tree_does_not_depend_on_the_order_reports_come_in():
    reports = [report(i) for i in range(1, 9)]
    assert ReportTree(reports).root == ReportTree(reversed(reports)).root


def test_a_changed_report_changes_the_root_and_fails_its_proof():
    reports = [report(i) for i in range(1, 6)]
    tree = ReportTree(reports)
    proof = tree.multiproof(reports[:2])
    leaves = [struct_hash(r) for r in proof.reports]
    leaves[0] = struct_hash(report(proof.reports[0].job_id, gpu_seconds=10**6))
    assert multiproof_root(leaves, proof.proof, proof.flags) != tree.root


def test_one_report_is_its_own_root():
    tree = ReportTree([report(1)])
    assert tree.root == struct_hash(report(1)) and tree.path(report(1)) == []


def test_pairs_hash_in_ascending_order():
    a, b = b"\x01" * 32, b"\x02" * 32
    assert hash_pair(a, b) == hash_pair(b, a)


@pytest.mark.parametrize(
    ("reports", "match"),
    [
        ([], "at least one report"),
        ([report(1), report(1)], "same report twice"),
        ([report(1), report(2, epoch=2)], "one epoch"),
    ],
)
def test_bad_batches_are_refused(reports, match):
    with pytest.raises(ValueError, match=match):
        ReportTree(reports)


def test_malformed_multiproofs_are_refused():
    tree = ReportTree([report(i) for i in range(1, 5)])
    proof = tree.multiproof([report(1)])
    leaves = [struct_hash(r) for r in proof.reports]
    with pytest.raises(ValueError, match="shape"):
        multiproof_root(leaves, proof.proof, (*proof.flags, False))
    with pytest.raises(ValueError, match="not computed yet"):
        multiproof_root(leaves, proof.proof, (True, *proof.flags[1:]))
    with pytest.raises(ValueError, match="not in the batch"):
        tree.multiproof([report(9)])


def test_the_batch_type_is_signed_like_the_reports():
    assert JobReportBatch.type_string() == "JobReportBatch(bytes32 root,uint256 epoch)"
