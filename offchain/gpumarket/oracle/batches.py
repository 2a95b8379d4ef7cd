"""Settling decided jobs in batches: one root signature per member instead of one per report.

    queue = BatchQueue(size=32, max_age_s=10)          # the designated submitter's decided jobs
    queue.add(job_id, provider, now); queue.due(now)   # a provider's jobs fill a batch, or by age
    result = settle_batch(signer, submitter, peers, queue.take())   # BatchResult
    signature = sign_batch(signer, epoch, root, job_ids)            # a peer's answer (the API)

A job whose report has a quorum of single signatures and whose designated submitter is this
oracle waits in the queue (gpumarket.oracle.jobs) with the other jobs of its provider. On chain
the jobs of a one-provider batch share that provider's storage writes (its collateral, GPUs in
use and payment balance: bench/GAS.md), so such a batch costs much less gas a job than a mixed
one. A batch goes once one provider's jobs fill it (``size``), or once the oldest job has waited
``max_age_s``, so a lone job is not held up: then whole groups go, oldest first, as many as fit,
several providers' leftovers sharing the batch rather than each paying for a transaction of its
own (:class:`BatchQueue`). Then this oracle builds the Merkle tree of its own decisions for
those jobs (gpumarket.signing.batch), signs the
``JobReportBatch`` root, and asks its peers to sign the same root (``POST /batches/job`` with
the epoch, the root and the job ids, a kilobyte for 128 jobs). A peer signs only a root it
builds itself from its own committed decisions for the same job ids (:func:`sign_batch`): a
root signature commits to nothing the member has not already signed alone, so batching cannot
make an honest oracle equivocate. With the threshold's signatures it sends one
``settle_batch`` (BatchSettler, every report of the tree) and records the submission for each
job; jobs settled meanwhile are skipped by the market. Without them (a peer has not decided a
job yet, or decided it differently), or when the transaction reverts, the batch's jobs go back
to single settlement, which their single quorums already allow: batching only ever saves gas.
Each member's root signature is also kept as evidence that it signed every report of the tree
(``DecisionStore.observe_batch_signature``): one that signed another report of one of these jobs
in the same epoch has equivocated (gpumarket.oracle.equivocation). A peer asked to sign gets
only the root and the job ids, not the proposer's signature, so it keeps nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gpumarket.oracle.peers import PeerClient, PeerError
from gpumarket.oracle.signer import OracleSigner
from gpumarket.signing import eip712
from gpumarket.signing.batch import MAX_BATCH, Multiproof, ReportTree
from gpumarket.signing.eip712 import JobReport, JobReportBatch

__all__ = ["BatchQueue", "BatchRefused", "BatchResult", "BatchSubmitter", "own_tree", "settle_batch", "sign_batch"]

log = logging.getLogger(__name__)


class BatchRefused(Exception):
    """This oracle will not sign the proposed root; ``code`` is the API's error code."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        super().__init__(detail)


def own_tree(signer: OracleSigner, epoch: int, job_ids: Sequence[int]) -> ReportTree:
    """The tree of this oracle's own decisions for ``job_ids`` in the current ``epoch`` (a
    member's); raises BatchRefused saying why there is none."""
    if not 1 <= len(job_ids) <= MAX_BATCH or len(set(job_ids)) != len(job_ids):
        raise BatchRefused("bad_batch", f"a batch holds 1 to {MAX_BATCH} distinct jobs")
    committee = signer.store.current_committee()
    if committee is None or committee.epoch != epoch or not committee.is_member(signer.address):
        raise BatchRefused("wrong_epoch", f"this oracle signs for the current epoch's committee, not epoch {epoch}")
    reports: list[JobReport] = []
    missing = []
    for job_id in job_ids:
        decision = signer.store.job_decision(job_id)
        if decision is None or decision.report.epoch != epoch:
            missing.append(job_id)
        else:
            assert isinstance(decision.report, JobReport)
            reports.append(decision.report)
    if missing:
        raise BatchRefused("not_decided", f"no decision of epoch {epoch} for jobs {missing[:8]}")
    return ReportTree(reports)


def sign_batch(signer: OracleSigner, epoch: int, root: bytes, job_ids: Sequence[int]) -> bytes:
    """Sign ``root`` if it is the root of :func:`own_tree`; raises BatchRefused saying why not."""
    if own_tree(signer, epoch, job_ids).root != root:
        raise BatchRefused("root_mismatch", "the root is not that of this oracle's decisions for these jobs")
    return signer.sign_batch_root(JobReportBatch(root=root, epoch=epoch))


@runtime_checkable
class BatchSubmitter(Protocol):
    """What settle_batch needs of the chain (ChainSubmitter implements it)."""

    def submit_batch(self, proof: Multiproof, signatures: Sequence[bytes]) -> str:
        """Send ``settle_batch`` of every report in ``proof``; return the transaction hash."""
        ...


@dataclass(frozen=True)
class BatchResult:
    job_ids: tuple[int, ...]
    tx_hash: str | None  # None: not sent; the jobs go back to single settlement
    detail: str


def settle_batch(
    signer: OracleSigner, submitter: BatchSubmitter, peers: Sequence[PeerClient], job_ids: Sequence[int]
) -> BatchResult:
    """Sign, gather and submit one batch of this oracle's decided jobs; see the module docstring."""
    store = signer.store
    ids = tuple(job_ids)
    committee = store.current_committee()
    if committee is None:
        return BatchResult(ids, None, "no committee")
    try:
        tree = own_tree(signer, committee.epoch, ids)
    except BatchRefused as exc:
        return BatchResult(ids, None, str(exc))
    batch = JobReportBatch(root=tree.root, epoch=tree.epoch)
    signatures = {signer.address: signer.sign_batch_root(batch)}
    for peer in peers:
        if len(signatures) >= committee.threshold:
            break
        try:
            signature = peer.sign_batch(tree.epoch, tree.root, ids)
        except PeerError as exc:
            log.info("batch of %d jobs: %s", len(ids), exc)
            continue
        try:
            peer_signer = eip712.recover(store.domain, batch, signature)
        except ValueError:
            continue
        if committee.is_member(peer_signer):
            signatures[peer_signer] = signature
            # Evidence: it signed each report of our tree, which another signature of it may contradict.
            store.observe_batch_signature(tree, signature)
    if len(signatures) < committee.threshold:
        return BatchResult(ids, None, f"{len(signatures)} of {committee.threshold} signatures of the root")
    chosen = sorted(signatures, key=lambda address: int(address, 16))[: committee.threshold]
    proof = tree.multiproof(tree.reports)
    tx_hash = submitter.submit_batch(proof, [signatures[address] for address in chosen])
    for job_id in ids:
        store.record_submission(job_id, tx_hash)
    log.info("submitted a batch of %d jobs: %s", len(ids), tx_hash)
    return BatchResult(ids, tx_hash, "submitted")


class BatchQueue:
    """The designated submitter's decided jobs waiting for a batch, grouped by provider (thread-safe).

    :meth:`take` makes a batch of one provider's jobs where it can: the ``size`` oldest jobs of
    the provider whose jobs fill a batch (the one waiting longest, if several do); otherwise,
    once the oldest job has waited ``max_age_s``, every provider's group whole, the group of the
    oldest job first, as many groups as fit. A group left out waits for the next batch, which
    is due at once if its oldest job has waited that long too. The jobs of a batch come group
    by group, each group oldest first.
    """

    def __init__(self, size: int, max_age_s: float) -> None:
        if not 1 <= size <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} jobs")
        self.size = size
        self.max_age_s = max_age_s
        self._waiting: dict[int, tuple[str, float]] = {}  # job id -> (its provider, when it joined)
        self._lock = threading.Lock()
        self.flushing = threading.Lock()  # one batch at a time

    def add(self, job_id: int, provider: str, now: float | None = None) -> None:
        with self._lock:
            self._waiting.setdefault(job_id, (provider, time.time() if now is None else now))

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._waiting

    def discard(self, job_id: int) -> None:
        with self._lock:
            self._waiting.pop(job_id, None)

    def due(self, now: float) -> bool:
        """One provider's jobs fill a batch, or the oldest job has waited ``max_age_s``."""
        with self._lock:
            groups = self._groups()
        if not groups:
            return False
        oldest_joined = groups[0][0][0]
        return any(len(group) >= self.size for group in groups) or now - oldest_joined >= self.max_age_s

    def take(self) -> list[int]:
        """The next batch (see the class docstring), out of the queue."""
        with self._lock:
            groups = self._groups()
            full = [group for group in groups if len(group) >= self.size]
            if full:
                batch = full[0][: self.size]
            else:
                batch = []
                for group in groups:
                    if len(batch) + len(group) <= self.size:
                        batch += group
            taken = [job_id for _, job_id in batch]
            for job_id in taken:
                del self._waiting[job_id]
            return taken

    def _groups(self) -> list[list[tuple[float, int]]]:
        """Each provider's jobs as (joined, job id), oldest first; the group of the oldest job first."""
        by_provider: dict[str, list[tuple[float, int]]] = {}
        for job_id, (provider, joined) in self._waiting.items():
            by_provider.setdefault(provider, []).append((joined, job_id))
        return sorted(sorted(group) for group in by_provider.values())
