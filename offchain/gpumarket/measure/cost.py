"""Operation counts of the challenge: what the prover does, what the verifier does, the ratio.

The prover is credited with its matmul only (2*m*n*p per round: what the floor counts), and
the verifier is charged with everything it does per opened tile (regenerating the tile's rows
of A and columns of B, the tile's product, its fingerprint, the leaf hash and the Merkle
proof), so the ratio is an upper bound. An "operation" is one integer or floating-point
operation on one element; a multiply-add counts two.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumarket.measure.classes import GpuClass
from gpumarket.measure.merkle import HASH_SIZE, proof_length

__all__ = [
    "FINGERPRINT_OPS_PER_ELEMENT",
    "GENERATION_OPS_PER_ENTRY",
    "HASH_OPS_PER_BYTE",
    "ChallengeCost",
    "challenge_cost",
]

# matrices.entries_from_codes: an xor, mix32 (3 xor-shifts of 2 ops, 2 multiplies and 2
# masks: 10 ops), a shift and an add.
GENERATION_OPS_PER_ENTRY = 13
# fingerprint.fingerprint_blocks: add the offset, square, reduce mod P, weight, sum.
FINGERPRINT_OPS_PER_ELEMENT = 5
# SHA-256: 64 rounds of about 40 32-bit operations per 64-byte block.
HASH_OPS_PER_BYTE = 40
_LEAF_HEADER = 1 + 8  # domain byte and leaf index
_NODE_INPUT = 1 + 2 * HASH_SIZE


@dataclass(frozen=True)
class ChallengeCost:
    prover_ops: int
    verifier_ops: int

    @property
    def verify_over_prove(self) -> float:
        return self.verifier_ops / self.prover_ops


def challenge_cost(gpu_class: GpuClass, gpu_count: int = 1) -> ChallengeCost:
    """Operation counts of one challenge of ``gpu_class`` for ``gpu_count`` GPUs."""
    rounds = gpu_class.rounds * gpu_count
    tile, n = gpu_class.tile, gpu_class.n
    leaves = gpu_class.tiles_per_round * rounds // gpu_class.tiles_per_leaf
    per_tile = (
        GENERATION_OPS_PER_ENTRY * 2 * tile * n  # tile rows of A and tile columns of B
        + 2 * tile * tile * n  # the tile's product
        + FINGERPRINT_OPS_PER_ELEMENT * tile * tile
        + HASH_OPS_PER_BYTE * (_LEAF_HEADER + 8 * gpu_class.tiles_per_leaf)
        + HASH_OPS_PER_BYTE * _NODE_INPUT * proof_length(leaves)
    )
    k = min(gpu_class.k, gpu_class.tiles_per_round * rounds)
    return ChallengeCost(prover_ops=gpu_class.ops_per_round * rounds, verifier_ops=k * per_tile)
