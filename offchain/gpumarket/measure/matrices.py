"""Seeded, counter-based generation of the challenge's small-integer matrices.

Every entry is a pure function of (seed, round, matrix, row, column): no state, no sequence,
so any single row of A or column of B can be regenerated alone (the verifier regenerates only
the rows and columns the opened tiles touch), and numpy on a CPU and torch on a GPU produce
the same values bit for bit.

The hash is arithmetic on non-negative 64-bit integers that never overflow: every value is
kept below 2**32 and every multiplier below 2**31, so a product stays below 2**63 and numpy's
int64 and torch's int64 (CPU or CUDA) compute exactly the same thing. The functions below use
only ``^ >> * & + -`` on their array arguments, so the SAME code runs on numpy arrays and on
torch tensors: there is one definition of the matrices, not one per backend. ``a_rows`` and
``b_columns`` (the verifier and the numpy prover) compute that definition in uint32, in place,
five times faster than int64 in numpy; the tests hold them equal to it.

It is not a cryptographic PRF and need not be: the seed is fresh for each challenge and
secret until it is sent, and what the challenge needs is that the entries have no structure a
prover could use to multiply faster than a dense matmul (a low rank, repeated rows, a linear
relation between rounds). Each entry goes through a full 32-bit mixer (two multiplies and
three xor-shifts, a bijection with full avalanche) of a per-row code xor a per-column code,
themselves mixed from the index and a per-(seed, round, matrix) key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ENTRY_MAX",
    "ENTRY_MIN",
    "MASK32",
    "MatrixKeys",
    "a_rows",
    "b_columns",
    "entries_from_codes",
    "index_codes",
    "matrix_keys",
    "mix32",
    "tile_product",
]

MASK32 = 0xFFFFFFFF
# Odd multipliers below 2**31 (so x * c < 2**63 for any x < 2**32).
_MIX_MUL_1 = 0x7FEB352D
_MIX_MUL_2 = 0x5BD1E995
# Entries are the top 4 bits of a mixed word, shifted to -8..7.
_ENTRY_SHIFT = 28
ENTRY_MIN = -8
ENTRY_MAX = 7

_KEY_DOMAIN = b"gpumarket/challenge/v1/matrix"

# Array = a numpy ndarray or a torch tensor of int64 (duck-typed: only operators are used).
Array = Any


def mix32(x: Array) -> Array:
    """A 32-bit bijective mixer on int64 values in [0, 2**32); result in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _MIX_MUL_1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _MIX_MUL_2) & MASK32
    return x ^ (x >> 16)


def index_codes(indices: Array, key: int) -> Array:
    """Per-row (or per-column) codes: mix32(index xor key), for int64 indices below 2**32."""
    return mix32(indices ^ key)


def entries_from_codes(row_codes: Array, col_codes: Array) -> Array:
    """The entries of a block: entry (i, j) = top 4 bits of mix32(row_code[i] ^ col_code[j]) - 8.

    ``row_codes`` must have shape (r, 1) and ``col_codes`` shape (1, c) (or broadcast alike);
    the result is int64 in [-8, 7] with shape (r, c).
    """
    return (mix32(row_codes ^ col_codes) >> _ENTRY_SHIFT) + ENTRY_MIN


@dataclass(frozen=True)
class MatrixKeys:
    """The four 32-bit keys of one round: rows and columns of A, rows and columns of B."""

    a_row: int
    a_col: int
    b_row: int
    b_col: int


def matrix_keys(seed: bytes, round_index: int) -> MatrixKeys:
    """Keys of round ``round_index``: SHA-256 of a domain tag, the seed and the round."""
    if len(seed) != 32:
        raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
    if round_index < 0:
        raise ValueError(f"round must be non-negative, got {round_index}")
    digest = hashlib.sha256(_KEY_DOMAIN + seed + round_index.to_bytes(8, "big")).digest()
    words = [int.from_bytes(digest[4 * i : 4 * i + 4], "big") for i in range(4)]
    return MatrixKeys(*words)


def _indices(values: Any) -> npt.NDArray[np.int64]:
    indices = np.asarray(values, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() > MASK32):
        raise ValueError("matrix indices must lie in [0, 2**32)")
    return indices


def a_rows(seed: bytes, round_index: int, rows: Any, n: int) -> npt.NDArray[np.int8]:
    """Rows ``rows`` of round ``round_index``'s A (m x n), as int8 of shape (len(rows), n)."""
    keys = matrix_keys(seed, round_index)
    row_codes = index_codes(_indices(rows), keys.a_row)[:, None]
    col_codes = index_codes(np.arange(n, dtype=np.int64), keys.a_col)[None, :]
    return _numpy_entries(row_codes, col_codes)


def b_columns(seed: bytes, round_index: int, columns: Any, n: int) -> npt.NDArray[np.int8]:
    """Columns ``columns`` of round ``round_index``'s B (n x p), as int8 of shape (n, len(columns))."""
    keys = matrix_keys(seed, round_index)
    row_codes = index_codes(np.arange(n, dtype=np.int64), keys.b_row)[:, None]
    col_codes = index_codes(_indices(columns), keys.b_col)[None, :]
    return _numpy_entries(row_codes, col_codes)


def _numpy_entries(row_codes: npt.NDArray[np.int64], col_codes: npt.NDArray[np.int64]) -> npt.NDArray[np.int8]:
    """``entries_from_codes(row_codes, col_codes)`` as int8, computed in uint32 and in place.

    The same arithmetic: mix32's multiplies taken mod 2**32 are what uint32 multiplication does,
    and its shifts are logical on unsigned words. One block of uint32 is updated in place
    instead of a new int64 array per operator: a quarter of the memory traffic, and about five
    times faster (the verifier regenerates a tile's rows and columns with it).
    """
    mixed = row_codes.astype(np.uint32) ^ col_codes.astype(np.uint32)
    mixed ^= mixed >> np.uint32(16)
    mixed *= np.uint32(_MIX_MUL_1)
    mixed ^= mixed >> np.uint32(15)
    mixed *= np.uint32(_MIX_MUL_2)
    mixed ^= mixed >> np.uint32(16)
    mixed >>= np.uint32(_ENTRY_SHIFT)
    entries = mixed.astype(np.int8)
    entries += np.int8(ENTRY_MIN)
    return entries


def tile_product(
    seed: bytes, round_index: int, tile_row: int, tile_col: int, tile: int, n: int
) -> npt.NDArray[np.int64]:
    """The exact tile (tile_row, tile_col) of round ``round_index``'s C = A.B, as int64 (tile x tile).

    Regenerates only the ``tile`` rows of A and the ``tile`` columns of B it needs:
    O(tile * n) generation and 2 * tile**2 * n multiply-adds. float32 is exact here (every
    partial sum is an integer of magnitude at most 64 * n <= 2**24, for the n <= 2**18 that the
    class table allows) and uses BLAS at half float64's memory and time.
    """
    rows = np.arange(tile_row * tile, (tile_row + 1) * tile, dtype=np.int64)
    cols = np.arange(tile_col * tile, (tile_col + 1) * tile, dtype=np.int64)
    a = a_rows(seed, round_index, rows, n).astype(np.float32)
    b = b_columns(seed, round_index, cols, n).astype(np.float32)
    return (a @ b).astype(np.int64)
