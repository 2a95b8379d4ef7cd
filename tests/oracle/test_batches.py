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


def test_the_queue_is_due_when_full_or_old():
    queue = BatchQueue(size=3, max_age_s=10)
    assert not queue.due(0)
    queue.add(1, now=0)
    queue.add(2, now=1)
    assert not queue.due(5)
    assert queue.due(10)  # job 1 waited 10 s
    queue.add(3, now=2)
    assert queue.due(3)  # full
    queue.add(4, now=3)
    assert queue.take() == [1, 2, 3]
    assert 4 in queue and 1 not in queue
    queue.discard(4)
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
