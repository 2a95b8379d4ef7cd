"""DecisionStore.observe_signature: a member's two different signed reports of one key and epoch
are kept as evidence, whichever way they reach this oracle; nothing an honest member signs is."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpumarket.oracle.peers import PeerClient
from gpumarket.oracle.signer import OracleSigner, SignedReport
from gpumarket.oracle.store import ConflictingDecision, DecisionStore
from gpumarket.signing.eip712 import Outcome, address_of, digest, sign
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
    assert {found.first[0], found.second[0]} == {completed(), failed()}
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
