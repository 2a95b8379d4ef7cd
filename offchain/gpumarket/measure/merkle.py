"""A binary Merkle tree over SHA-256 with domain-separated leaves and nodes.

Leaves are ``H(0x00 || index || data)`` and inner nodes ``H(0x01 || left || right)`` (as in
RFC 6962, so a leaf can never be passed off as a node or the reverse); the leaf's own index
is hashed in, so a leaf cannot be moved. A tree of L leaves is padded to the next power of
two with a fixed empty-leaf hash ``H(0x02 || tag)`` that no leaf can equal. A proof is the
list of sibling hashes from the leaf up; its length must be exactly ceil(log2(L)).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_LEAF",
    "HASH_SIZE",
    "MerkleProofError",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "proof_length",
    "verify_proof",
]

HASH_SIZE = 32
_LEAF = b"\x00"
_NODE = b"\x01"
EMPTY_LEAF = hashlib.sha256(b"\x02gpumarket/merkle/v1/empty").digest()


class MerkleProofError(ValueError):
    """A Merkle proof does not check out; the message says which part."""


def leaf_hash(index: int, data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + index.to_bytes(8, "big") + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def proof_length(leaf_count: int) -> int:
    """The number of sibling hashes in a proof for a tree of ``leaf_count`` leaves."""
    if leaf_count < 1:
        raise ValueError(f"a tree needs at least one leaf, got {leaf_count}")
    return (leaf_count - 1).bit_length()


class MerkleTree:
    """A tree built from leaf hashes (``leaf_hash``), keeping every level for proofs."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        if not leaf_hashes:
            raise ValueError("a tree needs at least one leaf")
        if any(len(h) != HASH_SIZE for h in leaf_hashes):
            raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
        self.leaf_count = len(leaf_hashes)
        width = 1 << proof_length(self.leaf_count)
        level = list(leaf_hashes) + [EMPTY_LEAF] * (width - self.leaf_count)
        self._levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
            self._levels.append(level)

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"leaf {index} is outside a tree of {self.leaf_count} leaves")
        path = []
        for level in self._levels[:-1]:
            path.append(level[index ^ 1])
            index //= 2
        return path


def verify_proof(root: bytes, leaf: bytes, index: int, leaf_count: int, proof: Sequence[bytes]) -> None:
    """Check that ``leaf`` (a leaf hash) sits at ``index`` of a ``leaf_count``-leaf tree with ``root``.

    Raises MerkleProofError naming what is wrong; returns None when the proof holds.
    """
    if not 0 <= index < leaf_count:
        raise MerkleProofError(f"leaf index {index} is outside a tree of {leaf_count} leaves")
    expected = proof_length(leaf_count)
    if len(proof) != expected:
        raise MerkleProofError(f"proof has {len(proof)} hashes, a tree of {leaf_count} leaves needs {expected}")
    node = leaf
    for depth, sibling in enumerate(proof):
        if len(sibling) != HASH_SIZE:
            raise MerkleProofError(f"proof hash {depth} is {len(sibling)} bytes, not {HASH_SIZE}")
        node = node_hash(sibling, node) if (index >> depth) & 1 else node_hash(node, sibling)
    if node != root:
        raise MerkleProofError("proof does not lead to the committed root")
