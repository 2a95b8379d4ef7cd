"""What every prover shares: committing to tile fingerprints and opening tiles on request.

A backend supplies only ``round_fingerprints`` (the expensive part: generate A and B, multiply,
fingerprint every tile); this base class turns each round's fingerprints into Merkle leaves as
they arrive (so a GPU backend keeps computing while the CPU hashes), builds the tree, and
answers an OpeningRequest with the tiles' values, their leaves' fingerprints and the proofs.

Opened tiles are recomputed on the CPU from the rows and columns they touch (as the verifier
does): k small products instead of keeping every C, which at GPU sizes is gigabytes a round.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from gpumarket.measure.layout import VALUE_DTYPE, leaf_bytes, round_leaf_hashes, tile_position
from gpumarket.measure.matrices import tile_product
from gpumarket.measure.merkle import MerkleTree
from gpumarket.measure.messages import Challenge, Commitment, Opening, OpeningRequest, TileOpening

__all__ = ["ProverError", "TileProver"]

log = logging.getLogger(__name__)

# Commitments kept for opening; the oldest is dropped first (a verifier opens once, promptly).
MAX_OPEN_COMMITMENTS = 4


class ProverError(ValueError):
    """The prover cannot answer a request (unknown challenge, tile out of range)."""


@dataclass
class _Committed:
    challenge: Challenge
    fingerprints: npt.NDArray[np.int64]  # (rounds, tiles_per_round) int64
    tree: MerkleTree


class TileProver(ABC):
    """A prover: ``commit`` a Challenge, then ``open`` the verifier's OpeningRequest."""

    #: the backend's name, as the bench and the CLI spell it
    backend: str = ""

    def __init__(self) -> None:
        self._committed: dict[bytes, _Committed] = {}

    @abstractmethod
    def round_fingerprints(self, challenge: Challenge) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
        """Yield ``(round, fingerprints)`` for every round, in any order; fingerprints has
        shape (tiles_per_round,), int64, in tile order."""

    def describe(self) -> dict[str, object]:
        """What ran: backend and devices, for reports and the benchmark."""
        return {"backend": self.backend, "devices": ["cpu"]}

    def tile_values(self, challenge: Challenge, index: int) -> npt.NDArray[np.int64]:
        """The values of tile ``index`` (tile x tile int64) this prover opens."""
        where = tile_position(challenge, index)
        return tile_product(challenge.seed, where.round, where.tile_row, where.tile_col, challenge.tile, challenge.n)

    def commit(self, challenge: Challenge) -> Commitment:
        fingerprints = np.empty((challenge.rounds, challenge.tiles_per_round), dtype=np.int64)
        leaves: list[bytes | None] = [None] * challenge.leaf_count
        leaves_per_round = challenge.tiles_per_round // challenge.tiles_per_leaf
        seen = set()
        for round_index, values in self.round_fingerprints(challenge):
            if round_index in seen or not 0 <= round_index < challenge.rounds:
                raise ProverError(f"backend produced round {round_index} twice or out of range")
            seen.add(round_index)
            fingerprints[round_index] = values
            first = round_index * leaves_per_round
            leaves[first : first + leaves_per_round] = round_leaf_hashes(
                challenge, round_index, fingerprints[round_index]
            )
        if len(seen) != challenge.rounds:
            raise ProverError(f"backend produced {len(seen)} of {challenge.rounds} rounds")
        tree = MerkleTree(cast("list[bytes]", leaves))  # every slot was filled: all rounds arrived
        while len(self._committed) >= MAX_OPEN_COMMITMENTS:
            self._committed.pop(next(iter(self._committed)))
        self._committed[challenge.challenge_id] = _Committed(challenge, fingerprints, tree)
        return Commitment(challenge_id=challenge.challenge_id, root=tree.root)

    def open(self, request: OpeningRequest) -> Opening:
        state = self._committed.pop(request.challenge_id, None)
        if state is None:
            raise ProverError(
                f"no commitment for challenge {request.challenge_id.hex()} (never committed or already opened)"
            )
        challenge = state.challenge
        per_leaf = challenge.tiles_per_leaf
        flat = state.fingerprints.reshape(-1)
        tiles = []
        for index in request.tiles:
            if index >= challenge.total_tiles:
                raise ProverError(f"tile {index} is outside the challenge's {challenge.total_tiles} tiles")
            leaf = index // per_leaf
            tiles.append(
                TileOpening(
                    index=index,
                    values=np.ascontiguousarray(self.tile_values(challenge, index), dtype=VALUE_DTYPE).tobytes(),
                    leaf_fingerprints=leaf_bytes(flat[leaf * per_leaf : (leaf + 1) * per_leaf]),
                    proof=state.tree.proof(leaf),
                )
            )
        return Opening(challenge_id=challenge.challenge_id, root=state.tree.root, tiles=tiles)
