"""Dishonest provers: the adversaries the challenge must catch (tests and the benchmark).

* SkippingProver computes only a fraction q of the tiles (whole tile rows, chosen at random
  each round, so it really saves the work) and commits a made-up fingerprint for the rest. It
  passes only when every opened tile is one it computed: for k distinct tiles out of L,
  C(qL, k) / C(L, k) <= q**k.
* LateSkippingProver is honest for its first N challenges, then a SkippingProver: a provider
  that passes the hardware check at registration and turns lazy once it takes jobs.
* FreivaldsProver commits to fingerprints it can get without multiplying the matrices: the
  separable linear form u^T C_tile v = (u^T A_rows)(B_cols v), O(tile * n) per tile. The
  challenge's fingerprint is nonlinear, so these never match the opened values.

Both open the true tile values (their best move: a made-up value fails the recomputation, the
true one fails the fingerprint committed before the indices were known).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from gpumarket.measure.matrices import a_rows, b_columns
from gpumarket.measure.messages import Challenge, Commitment
from gpumarket.measure.provers.numpy_prover import NumpyProver

__all__ = ["FreivaldsProver", "LateSkippingProver", "SkippingProver", "skipping_pass_probability"]


def skipping_pass_probability(total_tiles: int, computed_tiles: int, k: int) -> float:
    """P(all k distinct opened tiles are among the computed ones) = C(computed, k) / C(total, k)."""
    if k > total_tiles:
        raise ValueError(f"cannot open {k} distinct tiles out of {total_tiles}")
    return math.comb(computed_tiles, k) / math.comb(total_tiles, k)


class SkippingProver(NumpyProver):
    """Computes a fraction ``q`` of each round's tile rows; the rest get fingerprint 0."""

    backend = "numpy-skipping"

    def __init__(self, q: float, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        self.q = q
        self._rng = rng if rng is not None else np.random.default_rng()

    def computed_tiles(self, challenge: Challenge) -> int:
        """How many tiles this prover computes in total."""
        return self._rows_computed(challenge) * challenge.tile_columns * challenge.rounds

    def _rows_computed(self, challenge: Challenge) -> int:
        return round(self.q * (challenge.m // challenge.tile))

    def round_fingerprints(self, challenge: Challenge) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
        tile_rows = challenge.m // challenge.tile
        for round_index in range(challenge.rounds):
            fingerprints = np.zeros((tile_rows, challenge.tile_columns), dtype=np.int64)
            chosen = np.sort(self._rng.choice(tile_rows, size=self._rows_computed(challenge), replace=False))
            if len(chosen):
                fingerprints[chosen] = self.fingerprint_rows(challenge, round_index, chosen.astype(np.int64))
            yield round_index, fingerprints.reshape(-1)


class FreivaldsProver(NumpyProver):
    """Commits separable linear fingerprints u^T C v, computed without the matmul."""

    backend = "numpy-freivalds"

    def round_fingerprints(self, challenge: Challenge) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
        tile, n = challenge.tile, challenge.n
        u = np.arange(1, tile + 1, dtype=np.float64)
        v = np.arange(2, tile + 2, dtype=np.float64)
        for round_index in range(challenge.rounds):
            a = a_rows(challenge.seed, round_index, np.arange(challenge.m), n).astype(np.float64)
            b = b_columns(challenge.seed, round_index, np.arange(challenge.p), n).astype(np.float64)
            # u^T A_I for every tile row I, and B_J v for every tile column J: O((m + p) * n).
            left = np.einsum("t,itn->in", u, a.reshape(-1, tile, n))
            right = np.einsum("njc,c->nj", b.reshape(n, -1, tile), v)
            yield round_index, (left @ right).astype(np.int64).reshape(-1)


class LateSkippingProver(SkippingProver):
    """Honest for its first ``honest_challenges`` commitments, then a SkippingProver(q).

    The provider that turns lazy once verified: it passes the committee's hardware check at
    registration (one challenge per oracle) and skips work in every challenge after that, so
    the challenge at the start of its first job catches it (with probability 1 - q**k).
    """

    backend = "numpy-late-skipping"

    def __init__(self, q: float, honest_challenges: int, rng: np.random.Generator | None = None) -> None:
        super().__init__(q, rng=rng)
        if isinstance(honest_challenges, bool) or not isinstance(honest_challenges, int) or honest_challenges < 0:
            raise ValueError(f"honest_challenges must be an int >= 0, got {honest_challenges!r}")
        self.honest_challenges = honest_challenges
        self.committed = 0  # commitments made so far
        self._honest_now = False
        self._count_lock = threading.Lock()

    def commit(self, challenge: Challenge) -> Commitment:
        with self._count_lock:  # the agent answers one challenge at a time; this keeps the count exact anyway
            self._honest_now = self.committed < self.honest_challenges
            self.committed += 1
            return super().commit(challenge)

    def round_fingerprints(self, challenge: Challenge) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
        if self._honest_now:
            return NumpyProver.round_fingerprints(self, challenge)
        return super().round_fingerprints(challenge)
