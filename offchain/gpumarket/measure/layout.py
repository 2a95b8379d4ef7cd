"""Where each tile sits: global tile indices, tile coordinates and Merkle leaves.

Tiles are numbered round by round, and row-major inside a round:
``index = round * tiles_per_round + tile_row * (p // tile) + tile_col``. A Merkle leaf holds
``tiles_per_leaf`` consecutive tile fingerprints (little-endian uint64), so a leaf never spans
two rounds (tiles_per_leaf divides tiles_per_round) and leaf ``index // tiles_per_leaf`` holds
tile ``index`` at slot ``index % tiles_per_leaf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gpumarket.measure.merkle import leaf_hash
from gpumarket.measure.messages import Challenge

__all__ = ["FINGERPRINT_DTYPE", "VALUE_DTYPE", "TilePosition", "leaf_bytes", "round_leaf_hashes", "tile_position"]

FINGERPRINT_DTYPE = np.dtype("<u8")
VALUE_DTYPE = np.dtype("<i4")  # tile values on the wire: |C| <= 64 * n <= 2**24


@dataclass(frozen=True)
class TilePosition:
    round: int
    tile_row: int
    tile_col: int
    leaf: int
    slot: int


def tile_position(challenge: Challenge, index: int) -> TilePosition:
    if not 0 <= index < challenge.total_tiles:
        raise IndexError(f"tile {index} is outside the challenge's {challenge.total_tiles} tiles")
    round_index, within = divmod(index, challenge.tiles_per_round)
    tile_row, tile_col = divmod(within, challenge.tile_columns)
    leaf, slot = divmod(index, challenge.tiles_per_leaf)
    return TilePosition(round_index, tile_row, tile_col, leaf, slot)


def leaf_bytes(fingerprints: npt.NDArray[np.int64]) -> bytes:
    """A leaf's data: its tiles' fingerprints as little-endian uint64."""
    return np.ascontiguousarray(fingerprints, dtype=FINGERPRINT_DTYPE).tobytes()


def round_leaf_hashes(challenge: Challenge, round_index: int, fingerprints: npt.NDArray[np.int64]) -> list[bytes]:
    """The leaf hashes of one round, given its ``tiles_per_round`` fingerprints in tile order."""
    if fingerprints.shape != (challenge.tiles_per_round,):
        raise ValueError(
            f"round {round_index}: expected {challenge.tiles_per_round} fingerprints, got shape {fingerprints.shape}"
        )
    per_leaf = challenge.tiles_per_leaf
    first_leaf = round_index * challenge.tiles_per_round // per_leaf
    groups = fingerprints.reshape(-1, per_leaf)
    return [leaf_hash(first_leaf + offset, leaf_bytes(group)) for offset, group in enumerate(groups)]
