"""The CPU prover: numpy generation, float32 BLAS matmul (exact here), numpy fingerprints.

float32 is exact for these products: entries are in -8..7, so every partial sum is an integer
of magnitude at most 64 * n <= 2**24 (n is capped at 2**18), which fp32 represents exactly
whatever order BLAS adds in; sgemm is far faster than numpy's integer matmul (no BLAS).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from gpumarket.measure.fingerprint import fingerprint_blocks, fingerprint_keys
from gpumarket.measure.matrices import a_rows, b_columns
from gpumarket.measure.messages import Challenge
from gpumarket.measure.provers.base import TileProver

__all__ = ["NumpyProver"]

# Rows of A per block, bounded so that a block's int64 temporaries stay near this many bytes.
_BLOCK_BYTES = 32 * 1024 * 1024


class NumpyProver(TileProver):
    backend = "numpy"

    def round_fingerprints(self, challenge: Challenge) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
        tile_rows = np.arange(challenge.m // challenge.tile, dtype=np.int64)
        for round_index in range(challenge.rounds):
            yield round_index, self.fingerprint_rows(challenge, round_index, tile_rows).reshape(-1)

    def fingerprint_rows(
        self, challenge: Challenge, round_index: int, tile_rows: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Fingerprints of the tiles in tile rows ``tile_rows`` of one round: (len(tile_rows), p // tile).

        Computes only those rows of C (any subset: the cheating provers of the tests use it to
        skip work for real)."""
        tile, n = challenge.tile, challenge.n
        keys = fingerprint_keys(challenge.seed, tile)
        positions = keys.positions()
        weights, offsets = keys.weights(positions), keys.offsets(positions)
        b = b_columns(challenge.seed, round_index, np.arange(challenge.p, dtype=np.int64), n).astype(np.float32)
        rows_per_block = max(1, _BLOCK_BYTES // (8 * tile * max(n, challenge.p)))
        out = np.empty((len(tile_rows), challenge.tile_columns), dtype=np.int64)
        for start in range(0, len(tile_rows), rows_per_block):
            chosen = tile_rows[start : start + rows_per_block]
            rows = (chosen[:, None] * tile + np.arange(tile, dtype=np.int64)[None, :]).reshape(-1)
            a = a_rows(challenge.seed, round_index, rows, n).astype(np.float32)
            product = (a @ b).astype(np.int64)
            out[start : start + len(chosen)] = fingerprint_blocks(product, weights, offsets, tile)
        return out
