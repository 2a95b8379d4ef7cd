"""The Merkle commitment: proofs for every leaf, and each way a proof can be wrong."""

from __future__ import annotations

import hashlib

import pytest

from gpumarket.measure.merkle import (
    EMPTY_LEAF,
    MerkleProofError,
    MerkleTree,
    leaf_hash,
    node_hash,
    proof_length,
    verify_proof,
)


def _leaves(count: int) -> list[bytes]:
    return [leaf_hash(i, f"leaf {i}".encode()) for i in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_every_leaf_proves_against_the_root(count):
    leaves = _leaves(count)
    tree = MerkleTree(leaves)
    for index, leaf in enumerate(leaves):
        proof = tree.proof(index)
        assert len(proof) == proof_length(count)
        verify_proof(tree.root, leaf, index, count, proof)


def test_root_of_known_shapes():
    one = _leaves(1)
    assert MerkleTree(one).root == one[0]
    three = _leaves(3)
    assert MerkleTree(three).root == node_hash(node_hash(three[0], three[1]), node_hash(three[2], EMPTY_LEAF))


def test_leaves_and_nodes_are_domain_separated():
    data = b"x" * 64
    assert leaf_hash(0, data) != hashlib.sha256(data).digest()
    assert node_hash(data[:32], data[32:]) != hashlib.sha256(data).digest()
    assert leaf_hash(0, b"same") != leaf_hash(1, b"same")  # the index is bound into the leaf


def test_an_inner_node_cannot_pass_as_a_leaf():
    leaves = _leaves(4)
    tree = MerkleTree(leaves)
    inner = node_hash(leaves[0], leaves[1])
    with pytest.raises(MerkleProofError, match="needs 2"):
        verify_proof(tree.root, inner, 0, 4, [node_hash(leaves[2], leaves[3])])


@pytest.fixture
def five():
    leaves = _leaves(5)
    return leaves, MerkleTree(leaves)


def test_a_wrong_leaf_fails(five):
    leaves, tree = five
    with pytest.raises(MerkleProofError, match="does not lead to the committed root"):
        verify_proof(tree.root, leaf_hash(2, b"forged"), 2, 5, tree.proof(2))


def test_a_proof_for_another_position_fails(five):
    leaves, tree = five
    with pytest.raises(MerkleProofError, match="does not lead to the committed root"):
        verify_proof(tree.root, leaves[2], 3, 5, tree.proof(2))


def test_a_tampered_sibling_fails(five):
    leaves, tree = five
    proof = tree.proof(4)
    proof[1] = bytes(32)
    with pytest.raises(MerkleProofError, match="does not lead to the committed root"):
        verify_proof(tree.root, leaves[4], 4, 5, proof)


def test_proofs_of_the_wrong_length_or_width_fail(five):
    leaves, tree = five
    proof = tree.proof(0)
    with pytest.raises(MerkleProofError, match="proof has 2 hashes, a tree of 5 leaves needs 3"):
        verify_proof(tree.root, leaves[0], 0, 5, proof[:2])
    with pytest.raises(MerkleProofError, match="proof hash 1 is 31 bytes, not 32"):
        verify_proof(tree.root, leaves[0], 0, 5, [proof[0], proof[1][:31], proof[2]])
    with pytest.raises(MerkleProofError, match="leaf index 5 is outside a tree of 5 leaves"):
        verify_proof(tree.root, leaves[0], 5, 5, proof)


def test_padding_never_opens_as_a_leaf(five):
    _, tree = five
    with pytest.raises(IndexError, match="leaf 5 is outside a tree of 5 leaves"):
        tree.proof(5)


def test_bad_trees_are_refused():
    with pytest.raises(ValueError, match="at least one leaf"):
        MerkleTree([])
    with pytest.raises(ValueError, match="must be 32 bytes"):
        MerkleTree([b"short"])
