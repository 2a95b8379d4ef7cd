"""Batches of job reports under one committee signature: the Merkle tree and its multiproofs.

The committee can sign one ``JobReportBatch(root, epoch)`` instead of one signature per report.
``root`` is the root of a Merkle tree whose leaves are the reports' EIP-712 struct hashes
(:func:`gpumarket.signing.eip712.struct_hash`); an inner node is ``keccak256`` of its two
children in ascending order. The contracts (modules/job_batches.vy) check any subset of the
leaves with one multiproof, the algorithm of OpenZeppelin's MerkleProof and its JavaScript
merkle-tree package, written here afresh:

    tree = ReportTree(reports)                      # every report of one epoch, no duplicates
    batch = JobReportBatch(root=tree.root, epoch=epoch)
    proof = tree.multiproof(some_reports)           # reports in leaf order, hashes, flags
    market.settle_batch(proof, signatures)          # anyone, any subset, each job once
    tree.path(report)                               # one report's siblings (equivocation proofs)

Layout: the leaves, sorted by provider and then by hash, so that every oracle builds the same
tree from the same reports and a multiproof carries each provider's reports together (the
market writes a provider's shared words once per run of its jobs: bench/GAS.md), fill the end
of an array of ``2n - 1`` nodes (leaf ``i`` of the sorted order at index
``2n - 2 - i``) and node ``k`` has children ``2k + 1`` and ``2k + 2``; the root is node 0.
A leaf is a hash of 256 bytes and an inner node one of 64, so no proof can pass one off as the
other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_utils.crypto import keccak

from gpumarket.signing.eip712 import JobReport, struct_hash

__all__ = ["MAX_BATCH", "Multiproof", "ReportTree", "hash_pair", "multiproof_root", "path_root"]

# The most reports one settlement carries and the most proof hashes (BatchSettler's bounds).
MAX_BATCH = 128
MAX_PROOF = 128


def hash_pair(a: bytes, b: bytes) -> bytes:
    """An inner node: its children hashed in ascending order."""
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True)
class Multiproof:
    """What settle_batch takes besides the signatures: the reports in the proof's leaf order,
    the sibling hashes, and one flag per inner node hashed (sent as `flag_bits`)."""

    reports: tuple[JobReport, ...]
    proof: tuple[bytes, ...]
    flags: tuple[bool, ...]

    @property
    def flag_bits(self) -> int:
        """The flags as the contract takes them: bit i set when flag i is true. Their number
        is not sent: it is always leaves + proof hashes - 1 (at most 255)."""
        return sum(1 << i for i, flag in enumerate(self.flags) if flag)


class ReportTree:
    """The Merkle tree of a batch of job reports (all of one epoch, no report twice)."""

    def __init__(self, reports: Iterable[JobReport]) -> None:
        by_leaf: dict[bytes, JobReport] = {}
        for report in reports:
            if not isinstance(report, JobReport):
                raise TypeError(f"a batch holds JobReports, got {type(report).__name__}")
            leaf = struct_hash(report)
            if leaf in by_leaf:
                raise ValueError(f"job {report.job_id}: the same report twice in one batch")
            by_leaf[leaf] = report
        if not by_leaf:
            raise ValueError("a batch needs at least one report")
        epochs = {report.epoch for report in by_leaf.values()}
        if len(epochs) != 1:
            raise ValueError(f"a batch's reports share one epoch, got {sorted(epochs)}")
        self.epoch = epochs.pop()
        leaves = sorted(by_leaf, key=lambda leaf: (int(by_leaf[leaf].provider, 16), leaf))
        count = len(leaves)
        nodes: list[bytes] = [b""] * (2 * count - 1)
        for i, leaf in enumerate(leaves):
            nodes[len(nodes) - 1 - i] = leaf
        for k in range(count - 2, -1, -1):
            nodes[k] = hash_pair(nodes[2 * k + 1], nodes[2 * k + 2])
        self._nodes = nodes
        self._index = {leaf: len(nodes) - 1 - i for i, leaf in enumerate(leaves)}
        self._reports = by_leaf
        self._leaves = leaves

    def __len__(self) -> int:
        return len(self._reports)

    @property
    def root(self) -> bytes:
        return self._nodes[0]

    @property
    def reports(self) -> list[JobReport]:
        """The batch's reports in leaf order."""
        return [self._reports[leaf] for leaf in self._leaves]

    def _node_of(self, report: JobReport) -> int:
        try:
            return self._index[struct_hash(report)]
        except KeyError:
            raise ValueError(f"job {report.job_id}: this report is not in the batch") from None

    def path(self, report: JobReport) -> list[bytes]:
        """The siblings from `report`'s leaf up to the root."""
        k = self._node_of(report)
        siblings = []
        while k > 0:
            siblings.append(self._nodes[k + 1 if k % 2 else k - 1])
            k = (k - 1) // 2
        return siblings

    def multiproof(self, reports: Sequence[JobReport]) -> Multiproof:
        """One proof of every report in `reports` (a non-empty subset of the batch)."""
        indices = sorted({self._node_of(report) for report in reports}, reverse=True)
        if not indices:
            raise ValueError("a multiproof proves at least one report")
        if len(indices) != len(reports):
            raise ValueError("the same report twice in one multiproof")
        stack = list(indices)
        proof: list[bytes] = []
        flags: list[bool] = []
        while stack and stack[0] > 0:
            k = stack.pop(0)
            sibling = k + 1 if k % 2 else k - 1
            if stack and stack[0] == sibling:
                flags.append(True)
                stack.pop(0)
            else:
                flags.append(False)
                proof.append(self._nodes[sibling])
            stack.append((k - 1) // 2)
        ordered = tuple(self._reports[self._nodes[k]] for k in indices)
        return Multiproof(reports=ordered, proof=tuple(proof), flags=tuple(flags))


def multiproof_root(leaves: Sequence[bytes], proof: Sequence[bytes], flags: Sequence[bool]) -> bytes:
    """The root a multiproof hashes up to, as the contract computes it (ValueError if malformed)."""
    if not leaves:
        raise ValueError("a multiproof proves at least one leaf")
    if len(leaves) + len(proof) != len(flags) + 1:
        raise ValueError("bad multiproof shape")
    hashes: list[bytes] = []
    leaf_pos = proof_pos = hash_pos = 0

    def known() -> bytes:
        nonlocal leaf_pos, hash_pos
        if leaf_pos < len(leaves):
            leaf_pos += 1
            return leaves[leaf_pos - 1]
        if hash_pos >= len(hashes):
            raise ValueError("a flag asks for a hash not computed yet")
        hash_pos += 1
        return hashes[hash_pos - 1]

    for flag in flags:
        a = known()
        if flag:
            b = known()
        else:
            if proof_pos >= len(proof):
                raise ValueError("too few proof hashes")
            b = proof[proof_pos]
            proof_pos += 1
        hashes.append(hash_pair(a, b))
    if not flags:
        return leaves[0]
    if proof_pos != len(proof):
        raise ValueError("proof hashes left over")
    return hashes[-1]


def path_root(leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root one leaf's path hashes up to."""
    node = leaf
    for sibling in path:
        node = hash_pair(node, sibling)
    return node
