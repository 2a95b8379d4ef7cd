"""DecisionStore.observe_signature and observe_batch_signature: a member's two different signed
reports of one key and epoch are kept as evidence, whichever way they reach this oracle, alone or
under a batch root it signed; nothing an honest member signs is."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import pytest

from gpumarket.oracle.peers import PeerClient
from gpumarket.oracle.signer import OracleSigner, SignedReport
from gpumarket.oracle.store import _MIGRATIONS, Attestation, ConflictingDecision, DecisionStore
from gpumarket.signing.batch import ReportTree, path_root
from gpumarket.signing.eip712 import (
    JobReportBatch,
    Outcome,
    address_of,
    digest,
    recover,
    sign,
    struct_hash,
    to_json,
)
from gpumarket.testing.committee import oracle_key
from oracle.conftest import PROVIDER, hardware_report, job_report

JOB = 42


def completed():
    return job_report(JOB, PROVIDER, Outcome.COMPLETED, 600, epoch=1)


def failed():
    return job_report(JOB, PROVIDER, Outcome.FAILED, 0, epoch=1, result_hash=b"\x00" * 32, evidence_hash=b"\x00" * 32)


def signed_by(index: int, domain, report) -> SignedReport:
    """Report signed by test oracle ``index`` (its key is public: gpumarket.testing.committee)."""
    key = oracle_key(index)
    return SignedReport(
        kind="job",
        report=report,
        signature=sign(key, domain, report),
        signer=address_of(key),
        digest=digest(domain, report),
    )


def test_two_reports_pushed_by_one_member_are_an_equivocation(make_node, keys, domain):
    honest = make_node(0, serve=True)
    honest.store.decide(completed())
    peer = PeerClient(honest.url, domain)
    first = peer.push(signed_by(1, domain, completed()))
    second = peer.push(signed_by(1, domain, failed()))
    assert first.status == 202
    assert second.status == 409  # not our decision: refused for settlement, kept as evidence
    [found] = honest.store.equivocations()
    assert found.signer == keys[1].address and found.kind == "job" and found.epoch == 1
    assert {found.first.report, found.second.report} == {completed(), failed()}
    assert found.first.path is None and found.second.path is None  # both signed alone
    assert found.outcome is None


def test_the_same_report_twice_is_no_equivocation(make_node, keys, domain):
    node = make_node(0)
    node.store.decide(completed())
    signature = sign(oracle_key(1), domain, completed())
    assert node.store.observe_signature(completed(), signature) is None
    assert node.store.observe_signature(completed(), signature) is None
    assert node.store.equivocations() == []


def test_outsiders_and_keys_this_oracle_does_not_know_are_ignored(make_node, domain):
    node = make_node(0)
    outsider = oracle_key(50)
    node.store.decide(completed())
    for report in (completed(), failed()):
        assert node.store.observe_signature(report, sign(outsider, domain, report)) is None
    # A key neither decided nor followed: nothing is kept, whoever signed it.
    other = replace(completed(), job_id=JOB + 1)
    assert node.store.observe_signature(other, sign(outsider, domain, other)) is None
    assert node.store.equivocations() == []


def test_a_followed_job_counts_before_this_oracle_decides_it(make_node, keys, domain):
    node = make_node(0)
    node.store.watch_job(JOB, PROVIDER, 1_000)
    key = oracle_key(2)
    node.store.observe_signature(completed(), sign(key, domain, completed()))
    found = node.store.observe_signature(failed(), sign(key, domain, failed()))
    assert found is not None and found.signer == keys[2].address


def test_at_most_two_reports_are_kept_per_member(make_node, keys, domain):
    node = make_node(0)
    node.store.decide(completed())
    key = oracle_key(1)
    for gpu_seconds in (1, 2, 3, 4):
        report = replace(completed(), gpu_seconds=gpu_seconds)
        node.store.observe_signature(report, sign(key, domain, report))
    assert len(node.store.equivocations()) == 1
    assert node.store.counts()  # the store still answers


def test_hardware_reports_of_one_measurement(make_node, keys, domain):
    node = make_node(0)
    passing = hardware_report(PROVIDER, 1, 1, 20, 10**9, epoch=1)
    node.store.decide(passing)
    failing = replace(passing, measured_throughput=2)
    key = oracle_key(1)
    node.store.observe_signature(passing, sign(key, domain, passing))
    found = node.store.observe_signature(failing, sign(key, domain, failing))
    assert found is not None and found.kind == "hardware"


def test_an_honest_oracle_signs_one_report_per_job_across_a_restart(make_node, keys, domain):
    """Its decisions are write-once, so a restarted oracle signs the same report again or nothing:
    a peer that sees every signature it gave finds no equivocation."""
    honest = make_node(1)
    before = honest.signer.decide_and_sign(completed())
    path = honest.store.path
    honest.store.close()
    store = DecisionStore.open(path, domain, keys[1].address)
    try:
        signer = OracleSigner(store, keys[1])
        with pytest.raises(ConflictingDecision):
            signer.decide_and_sign(failed())
        after = signer.sign_job(JOB)
        assert after.digest == before.digest
    finally:
        store.close()
    watcher = make_node(0)
    watcher.store.decide(completed())
    for signed in (before, after):
        assert watcher.store.observe_signature(signed.report, signed.signature) is None
    assert watcher.store.equivocations() == []


# ------------------------------------------------------------------ batch roots


def batch_of(*job_ids: int) -> ReportTree:
    """The tree of completed reports for ``job_ids`` (JOB's report is :func:`completed`)."""
    return ReportTree(replace(completed(), job_id=job_id) for job_id in job_ids)


def root_signed_by(index: int, domain, tree: ReportTree) -> bytes:
    return sign(oracle_key(index), domain, JobReportBatch(root=tree.root, epoch=tree.epoch))


def proposer(make_node, tree: ReportTree):
    """Oracle 0, having decided every report of ``tree`` (the batch it proposes)."""
    node = make_node(0)
    for report in tree.reports:
        node.store.decide(report)
    return node


def assert_proves(domain, attestation: Attestation, signer: str) -> None:
    """What OracleBonds checks of a batched attestation: the path leads from the report's leaf
    to a root that ``signer`` signed."""
    assert attestation.path is not None
    root = path_root(struct_hash(attestation.report), attestation.path)
    batch = JobReportBatch(root=root, epoch=attestation.report.epoch)
    assert recover(domain, batch, attestation.signature) == signer


def test_a_root_signature_and_another_report_signed_alone_are_an_equivocation(make_node, keys, domain):
    tree = batch_of(JOB - 1, JOB, JOB + 1)
    node = proposer(make_node, tree)
    assert node.store.observe_batch_signature(tree, root_signed_by(1, domain, tree)) == []
    found = node.store.observe_signature(failed(), sign(oracle_key(1), domain, failed()))
    assert found is not None and found.signer == keys[1].address and found.key == (str(JOB),)
    assert found.first == Attestation(completed(), root_signed_by(1, domain, tree), tuple(tree.path(completed())))
    assert found.second == Attestation(failed(), sign(oracle_key(1), domain, failed()))
    assert_proves(domain, found.first, keys[1].address)
    assert node.store.equivocations() == [found]


def test_a_root_signature_after_the_other_report_completes_the_equivocation(make_node, keys, domain):
    tree = batch_of(JOB, JOB + 1)
    node = proposer(make_node, tree)
    assert node.store.observe_signature(failed(), sign(oracle_key(2), domain, failed())) is None
    [found] = node.store.observe_batch_signature(tree, root_signed_by(2, domain, tree))
    assert (found.signer, found.first.report, found.second.report) == (keys[2].address, failed(), completed())
    assert_proves(domain, found.second, keys[2].address)


def test_a_batch_of_one_report_has_an_empty_path(make_node, keys, domain):
    tree = batch_of(JOB)
    node = proposer(make_node, tree)
    node.store.observe_batch_signature(tree, root_signed_by(1, domain, tree))
    found = node.store.observe_signature(failed(), sign(oracle_key(1), domain, failed()))
    assert found is not None and found.first.path == ()  # batched, the root being the leaf itself
    assert_proves(domain, found.first, keys[1].address)


def test_an_honest_member_signing_alone_and_in_a_batch_is_no_equivocation(make_node, domain):
    tree = batch_of(JOB, JOB + 1)
    node = proposer(make_node, tree)
    for report in tree.reports:
        node.store.observe_signature(report, sign(oracle_key(1), domain, report))
    assert node.store.observe_batch_signature(tree, root_signed_by(1, domain, tree)) == []
    assert node.store.observe_batch_signature(tree, root_signed_by(1, domain, tree)) == []
    assert node.store.equivocations() == []


def test_root_signatures_of_outsiders_or_of_this_oracle_are_not_kept(make_node, domain):
    """Neither counts, even over two roots with different reports of one job (an outsider's key
    is no member; this oracle's own signs only its write-once decisions)."""
    tree = batch_of(JOB, JOB + 1)
    node = proposer(make_node, tree)
    conflicting = ReportTree([failed(), replace(completed(), job_id=JOB + 1)])
    for index in (50, 0):
        for batch in (tree, conflicting):
            assert node.store.observe_batch_signature(batch, root_signed_by(index, domain, batch)) == []
    assert node.store.observe_batch_signature(tree, b"\x01" * 65) == []  # recovers to no one we know
    assert node.store.equivocations() == []


def test_at_most_two_reports_per_member_whether_alone_or_batched(make_node, domain):
    tree = batch_of(JOB, JOB + 1)
    node = proposer(make_node, tree)
    for gpu_seconds in (1, 2):
        report = replace(completed(), gpu_seconds=gpu_seconds)
        node.store.observe_signature(report, sign(oracle_key(1), domain, report))
    assert node.store.observe_batch_signature(tree, root_signed_by(1, domain, tree)) == []
    [found] = node.store.equivocations()
    assert {found.first.report.gpu_seconds, found.second.report.gpu_seconds} == {1, 2}


def test_a_schema_5_store_keeps_its_evidence_as_signatures_alone(tmp_path, keys, domain, members):
    """Migration 6 adds how a row attests its report: the rows of before were all signed alone."""
    path = tmp_path / "v5.db"
    raw = sqlite3.connect(path)
    for migration in _MIGRATIONS[:5]:
        raw.executescript(migration)
    raw.execute("PRAGMA user_version = 5")
    alone = sign(oracle_key(1), domain, completed())
    raw.execute(
        "INSERT INTO observed_signatures VALUES ('job', ?, 1, ?, ?, ?, ?, 0.0)",
        (str(JOB), keys[1].address, digest(domain, completed()), json.dumps(to_json(completed())), alone),
    )
    raw.commit()
    raw.close()
    with DecisionStore.open(path, domain, keys[0].address) as store:
        assert store.schema_version() == 6
        store.set_committee(1, members, 2)
        store.decide(completed())
        found = store.observe_signature(failed(), sign(oracle_key(1), domain, failed()))
        assert found is not None and found.first == Attestation(completed(), alone)
