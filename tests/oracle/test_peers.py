"""Three oracles (test keys 0..2, 2-of-3) on real HTTP servers: gathering peers' signatures into a
quorum that eip712.recover (and a contract-rules double) accepts; pushing ours; disagreeing,
silent and hostile peers; designated and fallback submitters."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpumarket.oracle.peers import (
    PeerClient,
    PeerConfig,
    gather_hardware_signatures,
    gather_job_signatures,
    push_signature,
)
from gpumarket.oracle.settlement import (
    SettlementSubmitter,
    SubmitOutcome,
    designated_submitter,
    fallback_delay_under_lag,
    should_submit,
    submission_rank,
    submit_if_due,
)
from gpumarket.oracle.signer import NoQuorum
from gpumarket.oracle.store import NotDecided
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import oracle_key

from .conftest import PROVIDER, hardware_report, job_report
from .doubles import ContractDouble, Reverted

FAST = PeerConfig(timeout_s=1.0, attempts=2, backoff_s=0.05)


@pytest.fixture
def committee(make_node):
    """Three serving oracles."""
    return [make_node(i, serve=True) for i in range(3)]


def peers_of(node, nodes, domain, config=FAST):
    return [PeerClient(other.url, domain, config) for other in nodes if other is not node]


def test_gather_from_two_peers_makes_a_valid_quorum(committee, domain, members):
    report = job_report(11, PROVIDER, gpu_seconds=3600)
    for node in committee:
        node.signer.decide_and_sign(report)
    me = committee[0]
    result = gather_job_signatures(me.store, 11, peers_of(me, committee, domain), me.metrics)
    assert sorted(result.added.values()) == sorted(members[1:])
    assert result.held == 3 and not (result.pending or result.refused or result.failed)
    assert me.metrics.peer_signatures.value(source="gather", result="accepted") == 2

    quorum = me.signer.quorum(11)
    signers = [eip712.recover(domain, report, signature) for signature in quorum.signatures]
    assert len(signers) == 2 and all(s in members for s in signers)
    assert [int(s, 16) for s in signers] == sorted(int(s, 16) for s in signers) and len(set(signers)) == 2
    contract = ContractDouble(domain, 1, members, 2)
    contract.submit_settlement(quorum.report, quorum.signatures)
    assert contract.settled[11] == report

    again = gather_job_signatures(me.store, 11, peers_of(me, committee, domain))
    assert len(again.duplicates) == 2 and not again.added and again.held == 3


def test_a_peer_that_has_not_decided_is_pending_then_counted(committee, domain):
    report = job_report(12, PROVIDER, outcome=Outcome.FAILED)
    me, late, absent = committee
    me.signer.decide_and_sign(report)
    result = gather_job_signatures(me.store, 12, peers_of(me, committee, domain))
    assert sorted(result.pending) == sorted([late.url, absent.url]) and result.held == 1
    with pytest.raises(NoQuorum):
        me.signer.quorum(12)
    late.signer.decide_and_sign(report)
    result = gather_job_signatures(me.store, 12, peers_of(me, committee, domain))
    assert list(result.added) == [late.url] and result.pending == [absent.url]
    assert len(me.signer.quorum(12).signatures) == 2


def test_a_disagreeing_peer_is_refused_and_never_stored(committee, domain):
    report = job_report(13, PROVIDER, gpu_seconds=100)
    me, agrees, disagrees = committee
    me.signer.decide_and_sign(report)
    agrees.signer.decide_and_sign(report)
    disagrees.signer.decide_and_sign(replace(report, gpu_seconds=99))
    result = gather_job_signatures(me.store, 13, peers_of(me, committee, domain), me.metrics)
    assert result.refused == {disagrees.url: "report_mismatch"} and list(result.added) == [agrees.url]
    signers = {s.signer for s in me.store.signatures(me.store.job_decision(13).digest)}
    assert disagrees.key.address not in signers
    assert me.metrics.peer_signatures.value(source="gather", result="report_mismatch") == 1


def test_gathering_needs_our_own_decision_first(committee, domain):
    with pytest.raises(NotDecided):
        gather_job_signatures(committee[0].store, 14, peers_of(committee[0], committee, domain))


def test_an_unreachable_peer_is_bounded_in_time(make_node, domain):
    import socket

    me, peer = make_node(0), make_node(1, serve=True)
    report = job_report(15, PROVIDER)
    me.signer.decide_and_sign(report)
    peer.signer.decide_and_sign(report)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    result = gather_job_signatures(me.store, 15, [PeerClient(dead, domain, FAST), PeerClient(peer.url, domain, FAST)])
    assert time.monotonic() - started < 5
    assert result.failed == {dead: "unreachable"} and list(result.added) == [peer.url]


class _HostilePeer(BaseHTTPRequestHandler):
    """A peer that answers whatever the test sets in ``server.answer`` (status, body bytes)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        status, body = self.server.answer  # type: ignore[attr-defined]
        if status == "stall":
            time.sleep(3)
            status, body = 200, b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stops reading at its size limit

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostilePeer)
    server.daemon_threads = True
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def served_json(report, signature: bytes, signer: str) -> bytes:
    return json.dumps(
        {"kind": "job", "report": eip712.to_json(report), "signature": "0x" + signature.hex(), "signer": signer}
    ).encode()


def test_hostile_peers_are_refused(make_node, domain, hostile):
    me = make_node(0)
    report = job_report(16, PROVIDER)
    me.signer.decide_and_sign(report)
    url = f"http://127.0.0.1:{hostile.server_address[1]}"
    client = PeerClient(url, domain, PeerConfig(timeout_s=0.5, attempts=2, backoff_s=0.01, max_response_bytes=4096))
    outsider = eip712.sign(oracle_key(9), domain, report)
    member = eip712.sign(oracle_key(1), domain, report)
    other_job = eip712.sign(oracle_key(1), domain, replace(report, job_id=17))
    failed = replace(report, outcome=Outcome.FAILED)
    member_failed = eip712.sign(oracle_key(1), domain, failed)
    cases = [
        ((200, b"not json"), ("failed", "malformed")),
        ((200, b"{" + b" " * 10_000 + b"}"), ("failed", "too_large")),
        ((200, b'{"kind": "job", "report": {}, "signature": "0x00"}'), ("failed", "malformed")),
        ((200, served_json(report, outsider, eip712.address_of(oracle_key(9)))), ("refused", "not_a_member")),
        ((200, served_json(report, member, eip712.address_of(oracle_key(2)))), ("failed", "invalid_signature")),
        # A member's valid signature of another job's report, served for this job.
        (
            (200, served_json(replace(report, job_id=17), other_job, eip712.address_of(oracle_key(1)))),
            ("failed", "wrong_report"),
        ),
        # A member's valid signature of a different report for this job: not our decision.
        ((200, served_json(failed, member_failed, eip712.address_of(oracle_key(1)))), ("refused", "report_mismatch")),
        ((500, b"{}"), ("failed", "unreachable")),
        ((418, b"{}"), ("failed", "bad_answer")),
        (("stall", b""), ("failed", "unreachable")),
    ]
    for answer, expected in cases:
        hostile.answer = answer
        hostile.hits = 0
        started = time.monotonic()
        result = gather_job_signatures(me.store, 16, [client], me.metrics)
        assert time.monotonic() - started < 4
        assert not result.added and result.held == 1, answer
        outcome, reason = expected
        assert getattr(result, outcome) == {url: reason}, (answer, result)
    hostile.answer, hostile.hits = (503, b"{}"), 0
    gather_job_signatures(me.store, 16, [client])
    assert hostile.hits == 2  # 5xx retried exactly `attempts` times


def test_push_our_signature(committee, domain):
    report = job_report(18, PROVIDER)
    me, decided, undecided = committee
    signed = me.signer.decide_and_sign(report)
    decided.signer.decide_and_sign(report)
    result = push_signature(signed, peers_of(me, committee, domain))
    assert result.delivered == (decided.url,) and result.pending == (undecided.url,)
    assert push_signature(signed, [PeerClient(decided.url, domain, FAST)]).delivered == (decided.url,)  # replay
    assert len(decided.signer.quorum(18).signatures) == 2


def test_gather_hardware(committee, domain):
    report = hardware_report(PROVIDER, 1, 8, 8 * 10**12, 1_900_000_000, claim_version=1)
    for node in committee[:2]:
        node.signer.decide_and_sign(report)
    result = gather_hardware_signatures(
        committee[0].store, PROVIDER, 1, 1_900_000_000, peers_of(committee[0], committee, domain)
    )
    assert len(result.added) == 1 and result.held == 2
    quorum = committee[0].signer.hardware_quorum(PROVIDER, 1, 1_900_000_000)
    assert sorted(eip712.recover(domain, report, s) for s in quorum.signatures) == sorted(quorum.signers)


# --------------------------------------------------------------------------- submitters


def test_designated_submitter_is_one_member_per_job_spread_over_all(members):
    ordered = sorted(members, key=lambda a: int(a, 16))
    chosen = [designated_submitter(job_id, members) for job_id in range(9)]
    assert chosen == [ordered[j % 3] for j in range(9)]
    assert designated_submitter(5, list(reversed(members))) == designated_submitter(5, [m.lower() for m in members])
    for job_id in range(6):
        ranks = sorted(submission_rank(job_id, members, m) for m in members)
        assert ranks == [0, 1, 2]
        assert submission_rank(job_id, members, designated_submitter(job_id, members)) == 0
    with pytest.raises(ValueError):
        designated_submitter(1, [])
    with pytest.raises(ValueError):
        submission_rank(1, members, PROVIDER)


@pytest.mark.parametrize(
    ("now", "designated", "rank", "expected"),
    [
        (1000, True, 0, True),
        (1000, False, 1, False),
        (1059, False, 1, False),
        (1060, False, 1, True),
        (1060, False, 2, False),
        (1120, False, 2, True),
    ],
)
def test_should_submit(now, designated, rank, expected):
    assert should_submit(now, 1000, designated, 60, rank=rank) is expected


@pytest.mark.parametrize(("lag", "expected"), [(-1.0, 30.0), (0.0, 30.0), (12.0, 42.0), (30.0, 60.0), (1_222.0, 60.0)])
def test_a_late_fallback_waits_its_own_lag_on_top_but_at_most_one_more_delay(lag, expected):
    """A fallback whose loop runs late gives the designated submitter (as loaded, as late) that
    much longer; however late, it still acts within twice its delay."""
    assert fallback_delay_under_lag(30.0, lag) == expected


def test_submit_if_due_designated_then_fallback_never_twice(committee, domain, members):
    report = job_report(21, PROVIDER, gpu_seconds=10)
    for node in committee:
        node.signer.decide_and_sign(report)
        gather_job_signatures(node.store, 21, peers_of(node, committee, domain))
    contract = ContractDouble(domain, 1, members, 2)
    assert isinstance(contract, SettlementSubmitter)
    by_rank = sorted(committee, key=lambda n: submission_rank(21, members, n.key.address))
    designated, fallback1, _ = by_rank
    end = 10_000.0

    # A fallback waits its turn; the designated member submits at once, once.
    assert (
        submit_if_due(fallback1.signer, contract, 21, now=end + 1, job_end=end, fallback_delay=30).outcome
        is SubmitOutcome.NOT_DUE
    )
    result = submit_if_due(designated.signer, contract, 21, now=end + 1, job_end=end, fallback_delay=30)
    assert result.outcome is SubmitOutcome.SUBMITTED and contract.settled[21] == report
    assert designated.store.settlement(21).tx_hash == result.tx_hash
    # Its next step sees the chain settled: no resubmission, by anyone.
    for node in by_rank:
        step = submit_if_due(node.signer, contract, 21, now=end + 1000, job_end=end, fallback_delay=30)
        assert step.outcome is SubmitOutcome.ALREADY_SETTLED
        assert node.store.settlement(21).settled
    assert len(contract.submissions) == 1
    assert designated.metrics.submissions.value(result="submitted") == 1


def test_fallback_submits_when_the_designated_member_is_silent(committee, domain, members):
    report = job_report(22, PROVIDER)
    for node in committee:
        node.signer.decide_and_sign(report)
    contract = ContractDouble(domain, 1, members, 2)
    fallback = next(n for n in committee if submission_rank(22, members, n.key.address) == 1)
    end = 50_000.0
    assert (
        submit_if_due(fallback.signer, contract, 22, now=end + 31, job_end=end, fallback_delay=30).outcome
        is SubmitOutcome.NO_QUORUM
    )
    gather_job_signatures(fallback.store, 22, peers_of(fallback, committee, domain))
    result = submit_if_due(fallback.signer, contract, 22, now=end + 31, job_end=end, fallback_delay=30)
    assert result.outcome is SubmitOutcome.SUBMITTED and 22 in contract.settled
    # Before the chain reports it settled, a recent submission is not repeated.
    pending = ContractDouble(domain, 1, members, 2)
    step = submit_if_due(fallback.signer, pending, 22, now=time.time(), job_end=end, fallback_delay=30)
    assert step.outcome is SubmitOutcome.PENDING and not pending.submissions


def test_a_bad_quorum_would_revert(domain, members):
    report = job_report(23, PROVIDER)
    contract = ContractDouble(domain, 1, members, 2)
    sigs = eip712.quorum_signatures(domain, report, [oracle_key(0), oracle_key(1)])
    with pytest.raises(Reverted, match="ascending"):
        contract.submit_settlement(report, list(reversed(sigs)))
    with pytest.raises(Reverted, match="not a member"):
        contract.submit_settlement(report, eip712.quorum_signatures(domain, report, [oracle_key(0), oracle_key(9)]))
    contract.submit_settlement(report, sigs)
    with pytest.raises(Reverted, match="not running"):
        contract.submit_settlement(report, sigs)
