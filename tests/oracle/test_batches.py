"""gpumarket.oracle.batches: the queue, and a member's signature of a batch root (its API
route): given only over a root of the member's own decisions."""

from __future__ import annotations

import json

import pytest

from gpumarket.oracle.batches import BatchQueue, BatchRefused, sign_batch
from gpumarket.oracle.peers import PeerClient, PeerError
from gpumarket.signing.batch import ReportTree
from gpumarket.signing.eip712 import JobReportBatch, Outcome, recover
from oracle.conftest import PROVIDER, job_report
from oracle.test_api import call


def reports(*job_ids: int, gpu_seconds: int = 60):
    return [job_report(job_id, PROVIDER, Outcome.COMPLETED, gpu_seconds, epoch=1) for job_id in job_ids]


A, B, C = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20  # providers


def test_the_queue_is_due_when_one_providers_jobs_fill_a_batch_or_by_age():
    queue = BatchQueue(size=3, max_age_s=10)
    assert not queue.due(0)
    queue.add(1, A, now=0)
    queue.add(2, B, now=1)
    queue.add(3, A, now=2)
    assert not queue.due(5)  # three jobs, but no provider's fill a batch
    assert queue.due(10)  # job 1 waited 10 s
    queue.add(4, A, now=3)
    assert queue.due(3)  # A's jobs fill a batch
    assert queue.take() == [1, 3, 4]
    assert 2 in queue and 1 not in queue
    assert not queue.due(10)
    assert queue.due(11)  # job 2 waited 10 s
    queue.discard(2)
    assert not queue.due(100)


def test_a_full_group_goes_first_then_older_leftovers():
    queue = BatchQueue(size=2, max_age_s=10)
    queue.add(1, A, now=0)
    queue.add(2, B, now=1)
    queue.add(3, B, now=2)
    assert queue.take() == [2, 3]
    assert queue.take() == [1]


def test_by_age_whole_groups_share_a_batch_oldest_first_as_many_as_fit():
    """Leftovers of several providers share one batch, each provider's jobs together; a group
    that does not fit whole waits for the next batch (due at once: its oldest waited as long)."""
    queue = BatchQueue(size=4, max_age_s=10)
    for job_id, provider, now in [(1, A, 0), (5, B, 1), (2, C, 2), (3, B, 3), (4, A, 4), (6, B, 5)]:
        queue.add(job_id, provider, now=now)
    assert queue.due(10)
    assert queue.take() == [1, 4, 2]  # A's two, then C's one: B's three would not fit
    assert queue.due(11)
    assert queue.take() == [5, 3, 6]
    assert not queue.due(100)


def test_a_member_signs_the_root_of_its_own_decisions(make_node, domain):
    node = make_node(0)
    decided = reports(1, 2, 3)
    for report in decided:
        node.signer.decide_and_sign(report)
    tree = ReportTree(decided)
    signature = sign_batch(node.signer, 1, tree.root, [1, 2, 3])
    assert recover(domain, JobReportBatch(root=tree.root, epoch=1), signature) == node.key.address


@pytest.mark.parametrize(
    ("change", "code"),
    [("undecided", "not_decided"), ("different", "root_mismatch"), ("epoch", "wrong_epoch"), ("empty", "bad_batch")],
)
def test_a_member_refuses_any_other_root(make_node, change, code):
    node = make_node(0)
    for report in reports(1, 2):
        node.signer.decide_and_sign(report)
    ids, epoch, root = [1, 2], 1, ReportTree(reports(1, 2)).root
    if change == "undecided":
        ids, root = [1, 2, 3], ReportTree(reports(1, 2, 3)).root
    elif change == "different":
        root = ReportTree(reports(1, 2, gpu_seconds=61)).root
    elif change == "epoch":
        epoch = 2
    else:
        ids = []
    with pytest.raises(BatchRefused) as refused:
        sign_batch(node.signer, epoch, root, ids)
    assert refused.value.code == code


def test_the_api_signs_for_peers_and_refuses_precisely(make_node, domain):
    node = make_node(1, serve=True)
    decided = reports(7, 8)
    for report in decided:
        node.signer.decide_and_sign(report)
    root = ReportTree(decided).root
    peer = PeerClient(node.url, domain)
    signature = peer.sign_batch(1, root, [7, 8])
    assert recover(domain, JobReportBatch(root=root, epoch=1), signature) == node.key.address
    with pytest.raises(PeerError) as refused:
        peer.sign_batch(1, root, [7, 8, 9])
    assert refused.value.reason == "not_decided"
    for body, field in (
        ({"epoch": 1, "root": "0x12", "job_ids": ["7"]}, "root"),
        ({"epoch": 1, "root": "0x" + root.hex(), "job_ids": ["7", "7"]}, "job_ids"),
        ({"epoch": 1, "root": "0x" + root.hex(), "job_ids": ["x"]}, "job_ids.0"),
        ({"epoch": 1, "root": "0x" + root.hex(), "job_ids": ["7"], "extra": 1}, "extra"),
    ):
        status, answer, _ = call(node.url, "POST", "/batches/job", json.dumps(body).encode())
        assert status == 400 and answer.get("field") == field, answer
