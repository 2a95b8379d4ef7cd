"""Per-tile fingerprints of the product C: a nonlinear reduction that needs every element.

    fingerprint(tile) = sum over (i, j) of W[i, j] * (((C[i, j] + R[i, j]) ** 2) mod P)

with P = 2**31 - 1 (a prime), W odd 16-bit weights and R 24-bit offsets, both drawn per
position from the challenge seed (so nothing can be tabulated before the challenge), and the
outer sum taken over the integers (exact in int64, no wrap-around).

Why nonlinear. A fingerprint that is linear in C, sum W[i, j] * C[i, j], with separable weights
W = u v^T equals (u^T A_rows) (B_cols v): Freivalds' trick computes it from the tile's rows of A
and columns of B in O(tile * n) instead of the O(tile**2 * n) of the tile itself, so a prover
could commit to every tile's fingerprint without ever multiplying the matrices, and any linear
fingerprint whose weights have rank r falls the same way at O(r * tile * n). Here each element
is squared and reduced modulo a prime BEFORE the integer sum: that map is not linear, nor a
polynomial over the integers, in C; the only known way to obtain the fingerprint is to know
every C[i, j] exactly. The offset R keeps C and -C (which square alike) apart, and W, odd and
non-zero everywhere, keeps every element in the sum.

Why this one and not a cryptographic hash of the tile: it is a handful of elementwise integer
operations and one reduction, which a GPU runs at memory speed beside the matmul (a SHA-256
per tile would need the whole of C on the CPU), and numpy and torch compute it alike. It does
not need collision resistance: the verifier compares opened tile values with values it
recomputes itself, so the fingerprint only has to bind the prover, before it learns which tiles
are opened, to values it cannot produce without computing them; a guess of one tile's
fingerprint succeeds with probability below 2**-40.

The functions use only operators and ``reshape``/``sum(axis=...)`` on their array arguments,
so one definition serves numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gpumarket.measure.matrices import mix32

__all__ = [
    "FINGERPRINT_PRIME",
    "MAX_TILE",
    "FingerprintKeys",
    "fingerprint_blocks",
    "fingerprint_keys",
    "fingerprint_tile",
]

FINGERPRINT_PRIME = 2**31 - 1
# Bounds that keep every intermediate exact in int64: |C| <= 2**24 (fp32-exact sums) and
# R < 2**24 so (C + R)**2 < 2**50; a term is below 2**31 * 2**16 = 2**47, and a sum over at
# most 128 * 128 = 2**14 elements stays below 2**61.
MAX_TILE = 128
_OFFSET_SHIFT = 8  # R = top 24 bits of a mixed word
_WEIGHT_SHIFT = 16  # W = top 16 bits, forced odd

_KEY_DOMAIN = b"gpumarket/challenge/v1/fingerprint"

Array = Any


@dataclass(frozen=True)
class FingerprintKeys:
    """The per-challenge keys of the weights W and offsets R."""

    weight_key: int
    offset_key: int
    tile: int

    def positions(self) -> npt.NDArray[np.int64]:
        return np.arange(self.tile * self.tile, dtype=np.int64).reshape(self.tile, self.tile)

    def weights(self, positions: Array) -> Array:
        """W[i, j] for int64 positions i * tile + j: odd, in [1, 2**16)."""
        return (mix32(positions ^ self.weight_key) >> _WEIGHT_SHIFT) | 1

    def offsets(self, positions: Array) -> Array:
        """R[i, j] for int64 positions i * tile + j: in [0, 2**24)."""
        return mix32(positions ^ self.offset_key) >> _OFFSET_SHIFT


def fingerprint_keys(seed: bytes, tile: int) -> FingerprintKeys:
    if len(seed) != 32:
        raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
    if not 1 <= tile <= MAX_TILE:
        raise ValueError(f"tile must be between 1 and {MAX_TILE}, got {tile}")
    digest = hashlib.sha256(_KEY_DOMAIN + seed).digest()
    return FingerprintKeys(int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:8], "big"), tile)


def fingerprint_blocks(block: Array, weights: Array, offsets: Array, tile: int) -> Array:
    """Fingerprints of every tile of ``block`` (int64, shape (r * tile, c * tile)) -> (r, c) int64.

    ``weights`` and ``offsets`` are the (tile, tile) tables of FingerprintKeys, as the same
    kind of array as ``block`` (numpy or torch, same device).
    """
    rows, cols = block.shape
    if rows % tile or cols % tile:
        raise ValueError(f"block of {rows} x {cols} is not made of {tile} x {tile} tiles")
    tiles = block.reshape(rows // tile, tile, cols // tile, tile)
    shifted = tiles + offsets.reshape(1, tile, 1, tile)
    reduced = (shifted * shifted) % FINGERPRINT_PRIME
    return (reduced * weights.reshape(1, tile, 1, tile)).sum(axis=(1, 3))


def fingerprint_tile(values: npt.ArrayLike, keys: FingerprintKeys) -> int:
    """The fingerprint of one tile given as a (tile, tile) integer array (the verifier's side)."""
    positions = keys.positions()
    block = np.asarray(values, dtype=np.int64)
    return int(fingerprint_blocks(block, keys.weights(positions), keys.offsets(positions), keys.tile)[0, 0])
