"""DecisionStore and OracleSigner in one process: decide, sign, idempotency, conflicts, peers' signatures,
committees, quorum, settlements, cursors, schema and binding."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from gpumarket.chain.keys import ServiceKey, test_oracle
from gpumarket.oracle.signer import NoQuorum, OracleSigner, ReportKey, StaleEpoch
from gpumarket.oracle.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    AddResult,
    ConflictingDecision,
    DecisionStore,
    InvalidSignature,
    NotAMember,
    NotDecided,
    ReportMismatch,
    SchemaTooNew,
    StoreMismatch,
    UnknownEpoch,
)
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, Outcome
from gpumarket.testing.committee import oracle_key

from .conftest import CONTRACT, PROVIDER, hardware_report


def test_decide_then_sign_is_idempotent(make_node, report_for, domain):
    node = make_node(0)
    report = report_for(1, gpu_seconds=120)
    first = node.signer.decide_and_sign(report)
    again = node.signer.decide_and_sign(report)
    assert first.signature == again.signature == eip712.sign(oracle_key(0), domain, report)
    assert eip712.recover(domain, report, first.signature) == node.key.address
    decision = node.store.job_decision(1)
    assert decision is not None and decision.report == report and decision.signature == first.signature
    assert node.metrics.decisions.value(kind="job") == 1  # the second call committed nothing new


def test_a_different_decision_for_the_same_job_is_refused(make_node, report_for):
    node = make_node(0)
    report = report_for(2, outcome=Outcome.COMPLETED, gpu_seconds=50)
    signed = node.signer.decide_and_sign(report)
    for other in (
        replace(report, outcome=Outcome.FAILED),
        replace(report, gpu_seconds=51),
        replace(report, result_hash=b"\x33" * 32),
        replace(report, evidence_hash=b"\x44" * 32),
        replace(report, epoch=2),
        replace(report, provider=CONTRACT),
    ):
        with pytest.raises(ConflictingDecision) as info:
            node.signer.decide_and_sign(other)
        assert info.value.stored == report and info.value.proposed == other
    stored = node.store.job_decision(2)
    assert stored is not None and stored.report == report and stored.signature == signed.signature
    assert node.store.counts().signatures == 1


def test_decide_without_signing_then_sign_later(make_node, report_for, domain):
    node = make_node(0)
    report = report_for(3)
    decision = node.store.decide(report)
    assert decision.created and decision.signature is None
    assert node.store.decide(report).created is False
    signed = node.signer.sign_job(3)
    assert signed.signature == eip712.sign(oracle_key(0), domain, report)
    with pytest.raises(NotDecided):
        node.signer.sign_job(4)


def test_hardware_decisions_are_keyed_by_provider_claim_version_and_valid_until(make_node, domain):
    node = make_node(0)
    report = hardware_report(PROVIDER, gpu_class=1, gpu_count=2, measured_throughput=10**12, valid_until=1_900_000_000)
    signed = node.signer.decide_and_sign(report)
    assert node.signer.decide_and_sign(report).signature == signed.signature
    with pytest.raises(ConflictingDecision):
        node.signer.decide_and_sign(replace(report, measured_throughput=1))
    # Another validity window is another decision.
    later = replace(report, valid_until=1_900_086_400, measured_throughput=1)
    assert node.signer.decide_and_sign(later).signature != signed.signature
    # So is another claim measured within the same hour: the two never collide.
    new_claim = replace(report, gpu_count=4, claim_version=1, measured_throughput=0)
    assert node.signer.decide_and_sign(new_claim).signature != signed.signature
    assert node.signer.sign_hardware(PROVIDER.lower(), 0, 1_900_000_000).signature == signed.signature
    assert node.store.hardware_decision(PROVIDER, 1, 1_900_000_000).report == new_claim
    assert node.store.counts().hardware_decisions == 3


def test_a_signature_only_attaches_when_it_is_this_oracles_over_the_stored_decision(make_node, report_for, domain):
    node = make_node(0)
    report = report_for(5)
    decision = node.store.decide(report)
    with pytest.raises(InvalidSignature):  # another member's key
        node.store.attach_signature(decision, eip712.sign(oracle_key(1), domain, report))
    with pytest.raises(InvalidSignature):  # our key, another report
        node.store.attach_signature(decision, eip712.sign(oracle_key(0), domain, replace(report, gpu_seconds=9)))
    assert node.store.job_decision(5).signature is None


def test_peer_signatures_are_verified_on_insert(make_node, report_for, domain):
    node = make_node(0)
    report = report_for(6)
    with pytest.raises(NotDecided):
        node.store.add_peer_signature(report, eip712.sign(oracle_key(1), domain, report))
    node.signer.decide_and_sign(report)
    good = eip712.sign(oracle_key(1), domain, report)
    assert node.store.add_peer_signature(report, good) == (AddResult.ADDED, eip712.address_of(oracle_key(1)))
    assert node.store.add_peer_signature(report, good)[0] is AddResult.DUPLICATE
    with pytest.raises(ReportMismatch):
        other = replace(report, outcome=Outcome.FAILED)
        node.store.add_peer_signature(other, eip712.sign(oracle_key(2), domain, other))
    with pytest.raises(NotAMember):
        node.store.add_peer_signature(report, eip712.sign(oracle_key(7), domain, report))
    with pytest.raises(NotAMember):  # a member's signature of the same report under another domain
        other_domain = Domain(chain_id=1, verifying_contract=CONTRACT)
        node.store.add_peer_signature(report, eip712.sign(oracle_key(2), other_domain, report))
    with pytest.raises(InvalidSignature):
        node.store.add_peer_signature(report, b"\x01" * 65)
    stored = node.store.signatures(node.store.job_decision(6).digest)
    assert [s.signer for s in stored] == sorted(
        [eip712.address_of(oracle_key(0)), eip712.address_of(oracle_key(1))], key=lambda a: int(a, 16)
    )


def test_a_peer_signature_needs_the_epochs_committee(make_node, report_for, domain):
    node = make_node(0, committee=False)
    report = report_for(7)
    node.signer.decide_and_sign(report)
    with pytest.raises(UnknownEpoch):
        node.store.add_peer_signature(report, eip712.sign(oracle_key(1), domain, report))


def test_quorum_is_sorted_ascending_and_validates(make_node, report_for, domain, members):
    node = make_node(1)
    report = report_for(8, gpu_seconds=77)
    node.signer.decide_and_sign(report)
    with pytest.raises(NoQuorum) as info:
        node.signer.quorum(8)
    assert (info.value.have, info.value.need) == (1, 2)
    node.store.add_peer_signature(report, eip712.sign(oracle_key(2), domain, report))
    node.store.add_peer_signature(report, eip712.sign(oracle_key(0), domain, report))
    quorum = node.signer.quorum(8)
    assert len(quorum.signatures) == 2 == quorum.threshold
    signers = [eip712.recover(domain, report, sig) for sig in quorum.signatures]
    assert signers == list(quorum.signers)
    assert [int(s, 16) for s in signers] == sorted(int(s, 16) for s in signers)
    assert all(s in members for s in signers)
    report_tuple, signatures = quorum.call_args()
    assert report_tuple == eip712.to_tuple(report) and signatures == list(quorum.signatures)
    # A new committee voids the epoch-1 decision: no quorum from it.
    node.store.set_committee(2, members, 3)
    with pytest.raises(StaleEpoch):
        node.signer.quorum(8)


def test_hardware_quorum(make_node, domain):
    node = make_node(0)
    report = hardware_report(PROVIDER, 1, 1, 5 * 10**11, 1_800_000_000)
    node.signer.decide_and_sign(report)
    node.store.add_peer_signature(report, eip712.sign(oracle_key(2), domain, report))
    quorum = node.signer.hardware_quorum(PROVIDER, 0, 1_800_000_000)
    assert sorted(eip712.recover(domain, report, s) for s in quorum.signatures) == sorted(quorum.signers)


def test_committee_rules(store, members):
    assert store.set_committee(1, members, 2) == store.committee(1)  # idempotent
    with pytest.raises(StoreMismatch):
        store.set_committee(1, members, 3)
    for bad in (
        lambda: store.set_committee(3, [members[0], members[0].lower()], 2),  # duplicate
        lambda: store.set_committee(3, members, 1),  # threshold <= len / 2
        lambda: store.set_committee(3, members, 4),
        lambda: store.set_committee(3, [], 1),
        lambda: store.set_committee(0, members, 2),
        lambda: store.set_committee(3, [f"0x{i:040x}" for i in range(1, 33)], 17),  # > 31 members
    ):
        with pytest.raises(ValueError):
            bad()
    store.set_committee(5, members[:1], 1)
    assert store.current_committee().epoch == 5


def test_settlement_status_and_cursor(make_node, report_for):
    node = make_node(0)
    with pytest.raises(NotDecided):
        node.store.record_submission(9, "0xaa")
    node.signer.decide_and_sign(report_for(9))
    node.signer.decide_and_sign(report_for(10))
    assert node.store.settlement(9) is None
    assert node.store.unsettled_job_ids() == [9, 10]
    status = node.store.record_submission(9, "0xaa")
    assert (status.tx_hash, status.submissions, status.settled) == ("0xaa", 1, False)
    assert node.store.record_submission(9, "0xbb").submissions == 2
    settled = node.store.mark_settled(9, "0xbb")
    assert settled.settled and settled.settled_tx == "0xbb"
    assert node.store.mark_settled(9, "0xcc").settled_tx == "0xbb"  # idempotent: first tx kept
    assert node.store.unsettled_job_ids() == [10]
    assert node.store.cursor("chain") is None
    node.store.set_cursor("chain", 120, "0x" + "ab" * 32)
    node.store.set_cursor("chain", 125)
    assert node.store.cursor("chain").block == 125
    with pytest.raises(ValueError):
        node.store.set_cursor("chain", -1)


def test_uint256_job_ids_round_trip(make_node, report_for):
    node = make_node(0)
    big = 2**256 - 1
    node.signer.decide_and_sign(report_for(big, gpu_seconds=2**200))
    assert node.store.job_decision(big).report.gpu_seconds == 2**200
    assert node.store.job_decision(big - 1) is None


def test_schema_pragmas_and_migration_from_empty(tmp_path, domain, keys):
    path = tmp_path / "fresh.db"
    with DecisionStore.open(path, domain, keys[0].address) as store:
        assert store.schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "meta",
        "committees",
        "job_decisions",
        "hardware_decisions",
        "signatures",
        "settlements",
        "cursors",
    } <= tables
    raw.close()
    with DecisionStore.open(path, domain, keys[0].address) as store:  # reopening migrates nothing
        assert store.schema_version() == SCHEMA_VERSION
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_store_of_schema_2_keeps_its_jobs_and_drops_its_old_type_hardware_decisions(
    tmp_path, report_for, domain, keys
):
    """Schema 2 keyed hardware decisions by (provider, valid_until) and held reports of the old
    HardwareReport type (no claim version), which no current contract verifies: migration 3
    drops them and their signatures and keeps everything else."""
    path = tmp_path / "v2.db"
    raw = sqlite3.connect(path)
    for migration in _MIGRATIONS[:2]:
        raw.executescript(migration)
    raw.execute("PRAGMA user_version = 2")
    old_report = '{"provider":"%s","gpu_class":1,"gpu_count":1,"measured_throughput":5,"valid_until":7,"epoch":1}'
    raw.execute(
        "INSERT INTO hardware_decisions VALUES (?, '7', ?, ?, 1, 0.0, NULL, NULL)",
        (PROVIDER, old_report % PROVIDER, b"\x01" * 32),
    )
    raw.execute("INSERT INTO signatures VALUES (?, ?, ?, 'self', 0.0)", (b"\x01" * 32, keys[0].address, b"\x02" * 65))
    raw.commit()
    raw.close()
    with DecisionStore.open(path, domain, keys[0].address) as store:
        store.set_committee(1, [key.address for key in keys], 2)
        job = report_for(1)
        store.decide(job)
        assert store.schema_version() == SCHEMA_VERSION
        counts = store.counts()
        assert (counts.job_decisions, counts.hardware_decisions, counts.signatures) == (1, 0, 0)
        assert store.signatures(b"\x01" * 32) == []
        report = hardware_report(PROVIDER, 1, 1, 5, 7, claim_version=2)
        assert store.decide(report).created and store.hardware_decision(PROVIDER, 2, 7).report == report
        assert store.job_decision(1).report == job


def test_a_newer_schema_is_refused(tmp_path, domain, keys):
    path = tmp_path / "newer.db"
    DecisionStore.open(path, domain, keys[0].address).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(SchemaTooNew):
        DecisionStore.open(path, domain, keys[0].address)


def test_a_store_is_bound_to_its_domain_and_oracle(tmp_path, domain, keys):
    path = tmp_path / "bound.db"
    DecisionStore.open(path, domain, keys[0].address).close()
    with pytest.raises(StoreMismatch):
        DecisionStore.open(path, domain, keys[1].address)
    with pytest.raises(StoreMismatch):
        DecisionStore.open(path, Domain(chain_id=domain.chain_id + 1, verifying_contract=CONTRACT), keys[0].address)
    store = DecisionStore.open(path, domain, keys[0].address)
    with pytest.raises(Exception, match="not the store's oracle"):
        OracleSigner(store, keys[1])
    store.close()


def test_a_failed_write_rolls_back(make_node, report_for):
    node = make_node(0)
    report = report_for(11)
    node.store.decide(report)
    with pytest.raises(ConflictingDecision):
        node.store.decide(replace(report, gpu_seconds=1))
    # The connection is usable and not left inside a transaction.
    assert not node.store._db.in_transaction
    node.store.decide(report_for(12))
    assert node.store.counts().job_decisions == 2


def test_only_a_decision_waits_for_the_fsync(make_node, report_for, domain):
    """A decision commits with synchronous=FULL (on disk before anything signs it); a write that
    stores signatures only commits with NORMAL (a lost one is made or gathered again, see the
    store's module doc), and FULL is in effect again after it, whether it committed or failed."""
    node = make_node(0)
    report = report_for(13)
    statements: list[str] = []
    node.store._db.set_trace_callback(statements.append)

    def commit_levels() -> list[str]:
        """The synchronous level in effect at each write transaction's COMMIT since the last call."""
        level, levels, writing = "FULL", [], False  # the store opens with FULL (checked below)
        for sql in statements:
            if sql.startswith("PRAGMA synchronous"):
                level = sql.rsplit("=", 1)[1].strip()
            elif sql == "BEGIN IMMEDIATE":
                writing = True
            elif sql == "COMMIT" and writing:
                levels.append(level)
                writing = False
        statements.clear()
        return levels

    node.store.decide(report)
    assert commit_levels() == ["FULL"]
    node.signer.sign_job(13)
    assert commit_levels() == ["NORMAL"]
    node.store.add_peer_signature(report, eip712.sign(oracle_key(1), domain, report))
    assert commit_levels() == ["NORMAL"]
    node.store.record_submission(13, "0x" + "ab" * 32)
    assert commit_levels() == ["FULL"]
    with pytest.raises(RuntimeError), node.store._write_signatures():
        raise RuntimeError("a failure inside the transaction")
    node.store._db.set_trace_callback(None)
    assert not node.store._db.in_transaction
    assert node.store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert node.store.job_decision(13).signature == eip712.sign(oracle_key(0), domain, report)
    assert node.store.counts().signatures == 2


def test_any_report_key_can_sign(tmp_path, domain, report_for):
    """OracleSigner takes any ReportKey (address + sign_report), such as the chain layer's service key."""

    class Delegating:
        def __init__(self, inner: ServiceKey) -> None:
            self._inner = inner
            self.address = inner.address

        def sign_report(self, domain, report):
            return self._inner.sign_report(domain, report)

    key = Delegating(test_oracle(2))
    assert isinstance(key, ReportKey) and isinstance(test_oracle(2), ReportKey)
    with DecisionStore.open(tmp_path / "any.db", domain, key.address) as store:
        signed = OracleSigner(store, key).decide_and_sign(report_for(40))
        assert signed.signature == eip712.sign(oracle_key(2), domain, report_for(40))


def test_an_epoch_beyond_the_column_is_refused_cleanly(make_node, report_for):
    node = make_node(0)
    with pytest.raises(ValueError, match="epoch"):
        node.store.decide(report_for(41, epoch=2**63))
    assert node.store.job_decision(41) is None
