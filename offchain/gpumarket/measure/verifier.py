"""The verifier (the oracle's side of the challenge): issue, time, sample, check.

1. ``issue`` draws a fresh challenge id and 32-byte seed (never reused: a repeated seed is
   refused) and records t0 on the verifier's own monotonic clock, right before it is sent.
2. ``receive_commitment`` records t1 on that clock FIRST, then draws k distinct tile indices
   from fresh system randomness (never from the root, which a cheater could grind).
3. ``check_opening`` checks every opened tile: the leaf fingerprint equals the fingerprint of
   the opened values, the leaf's Merkle proof leads to the committed root, and the values equal
   the exact product recomputed from ONLY the rows of A and columns of B the tile touches
   (O(k * tile * n) work, independent of m, p and rounds). Then throughput =
   2*m*n*p*rounds / (t1 - t0 - rtt), and the challenge passes iff it is at least the class
   floor times the GPU count.

Nothing the prover sends carries a time. Content failures (wrong values, proofs, fingerprints,
tiles, a changed root, a slow answer) end the challenge with a failed Verdict naming the first
reason; protocol misuse (unknown challenge, a replayed or second commitment, an opening for a
settled challenge) raises ChallengeRejected, and a second commitment also fails the challenge.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np
from threadpoolctl import ThreadpoolController

from gpumarket.measure.classes import GpuClass
from gpumarket.measure.fingerprint import fingerprint_keys, fingerprint_tile
from gpumarket.measure.layout import FINGERPRINT_DTYPE, VALUE_DTYPE, tile_position
from gpumarket.measure.matrices import tile_product
from gpumarket.measure.merkle import MerkleProofError, leaf_hash, verify_proof
from gpumarket.measure.messages import Challenge, Commitment, Opening, OpeningRequest

__all__ = ["ChallengeRejected", "Reason", "Verdict", "Verifier"]

log = logging.getLogger(__name__)


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The process's native thread pools, found once: finding them searches every loaded library
    (about 0.4 ms, a tenth of a cpu-dev check), where limiting known ones costs microseconds."""
    return ThreadpoolController()


class Reason(StrEnum):
    """Why a challenge failed or a message was refused."""

    UNKNOWN_CHALLENGE = "unknown_challenge"
    REPLAYED = "replayed"
    OUT_OF_ORDER = "out_of_order"
    ROOT_CHANGED = "root_changed"
    WRONG_TILES = "wrong_tiles"
    MALFORMED_TILE = "malformed_tile"
    WRONG_FINGERPRINT = "wrong_fingerprint"
    WRONG_PROOF = "wrong_proof"
    WRONG_VALUES = "wrong_values"
    UNTIMEABLE = "untimeable"
    BELOW_FLOOR = "below_floor"


class ChallengeRejected(Exception):
    """A message the verifier refuses outright; ``reason`` is the code, str() the detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Verdict:
    """The outcome of one challenge. ``reason`` is None when it passed."""

    challenge_id: str
    gpu_class: str
    gpu_count: int
    passed: bool
    reason: Reason | None
    detail: str
    ops: int
    elapsed_seconds: float  # t1 - t0 on the verifier's clock
    rtt_seconds: float
    throughput_ops_per_second: float | None  # None when the answer was not valid
    required_ops_per_second: int
    verify_cpu_seconds: float

    def to_dict(self) -> dict[str, object]:
        record = asdict(self)
        record["reason"] = self.reason.value if self.reason else None
        return record


class _Failed(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _Pending:
    challenge: Challenge
    gpu_class: GpuClass
    gpu_count: int
    rtt_seconds: float
    t0: float
    t1: float | None = None
    root: bytes | None = None
    tiles: list[int] = field(default_factory=list)
    verdict: Verdict | None = None


class Verifier:
    """Issues challenges and judges the answers; keeps every challenge it issued.

    ``clock`` is the only clock used for timing (monotonic by default); ``randomness`` draws
    the opened tiles (the OS's CSPRNG by default); ``seed_source`` draws ids and seeds.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        randomness: random.Random | None = None,
        seed_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._clock = clock
        self._random = randomness if randomness is not None else secrets.SystemRandom()
        self._seed_source = seed_source
        self._challenges: dict[bytes, _Pending] = {}
        self._seeds: set[bytes] = set()

    def measure_rtt(self, ping: Callable[[], object], samples: int = 3) -> float:
        """The shortest of ``samples`` round trips of ``ping`` on the verifier's clock."""
        if samples < 1:
            raise ValueError("samples must be at least 1")
        best = float("inf")
        for _ in range(samples):
            start = self._clock()
            ping()
            best = min(best, self._clock() - start)
        return best

    def issue(self, gpu_class: GpuClass, gpu_count: int = 1, rtt_seconds: float = 0.0) -> Challenge:
        """A fresh challenge for ``gpu_count`` GPUs of ``gpu_class``; t0 is taken as it returns.

        Rounds scale with the GPU count so that each GPU works about as long as one does alone.
        """
        if gpu_count < 1:
            raise ValueError(f"gpu_count must be at least 1, got {gpu_count}")
        if rtt_seconds < 0:
            raise ValueError(f"rtt_seconds must not be negative, got {rtt_seconds}")
        seed = self._seed_source(32)
        challenge_id = self._seed_source(16)
        if seed in self._seeds:
            raise ChallengeRejected(
                Reason.REPLAYED, "the seed source repeated a seed; a challenge must never be reused"
            )
        if challenge_id in self._challenges:
            raise ChallengeRejected(Reason.REPLAYED, f"challenge id {challenge_id.hex()} was already issued")
        challenge = Challenge(
            challenge_id=challenge_id,
            seed=seed,
            gpu_class=gpu_class.id,
            m=gpu_class.m,
            n=gpu_class.n,
            p=gpu_class.p,
            rounds=gpu_class.rounds * gpu_count,
            tile=gpu_class.tile,
            tiles_per_leaf=gpu_class.tiles_per_leaf,
        )
        self._seeds.add(seed)
        self._challenges[challenge_id] = _Pending(challenge, gpu_class, gpu_count, rtt_seconds, t0=self._clock())
        return challenge

    def receive_commitment(self, commitment: Commitment) -> OpeningRequest:
        """Record t1, then choose the tiles to open. Raises ChallengeRejected on misuse."""
        t1 = self._clock()
        pending = self._pending(commitment.challenge_id)
        if pending.verdict is not None:
            raise ChallengeRejected(Reason.REPLAYED, f"challenge {commitment.challenge_id.hex()} was already settled")
        if pending.root is not None:
            if commitment.root != pending.root:
                detail = (
                    "a second commitment with another root after the tile indices were sent: the root cannot change"
                )
                self._settle(pending, reason=Reason.ROOT_CHANGED, detail=detail, cpu_seconds=0.0)
                raise ChallengeRejected(Reason.ROOT_CHANGED, detail)
            raise ChallengeRejected(Reason.REPLAYED, f"challenge {commitment.challenge_id.hex()} was already answered")
        pending.t1, pending.root = t1, commitment.root
        k = min(pending.gpu_class.k, pending.challenge.total_tiles)
        pending.tiles = self._random.sample(range(pending.challenge.total_tiles), k)
        return OpeningRequest(challenge_id=commitment.challenge_id, tiles=pending.tiles)

    def check_opening(self, opening: Opening) -> Verdict:
        """Judge the opening and settle the challenge; returns its Verdict."""
        pending = self._pending(opening.challenge_id)
        if pending.verdict is not None:
            raise ChallengeRejected(Reason.REPLAYED, f"challenge {opening.challenge_id.hex()} was already settled")
        if pending.root is None:
            raise ChallengeRejected(
                Reason.OUT_OF_ORDER, f"challenge {opening.challenge_id.hex()} has no commitment yet"
            )
        started = time.process_time()
        try:
            self._check_tiles(pending, opening)
        except _Failed as failure:
            return self._settle(pending, failure.reason, failure.detail, time.process_time() - started)
        return self._settle(pending, None, "", time.process_time() - started)

    def _pending(self, challenge_id: bytes) -> _Pending:
        pending = self._challenges.get(challenge_id)
        if pending is None:
            raise ChallengeRejected(Reason.UNKNOWN_CHALLENGE, f"challenge {challenge_id.hex()} was never issued here")
        return pending

    def _check_tiles(self, pending: _Pending, opening: Opening) -> None:
        challenge = pending.challenge
        if opening.root != pending.root:
            raise _Failed(Reason.ROOT_CHANGED, "the opening restates a root other than the committed one")
        opened = [tile.index for tile in opening.tiles]
        if opened != pending.tiles:
            raise _Failed(Reason.WRONG_TILES, f"opened tiles {opened} are not the requested {pending.tiles}")
        keys = fingerprint_keys(challenge.seed, challenge.tile)
        value_bytes = challenge.tile * challenge.tile * VALUE_DTYPE.itemsize
        leaf_size = challenge.tiles_per_leaf * FINGERPRINT_DTYPE.itemsize
        values_of = {}
        # Cheap checks first (shapes, fingerprints, proofs), the recomputation last.
        for tile in opening.tiles:
            if len(tile.values) != value_bytes:
                raise _Failed(
                    Reason.MALFORMED_TILE, f"tile {tile.index}: {len(tile.values)} value bytes, expected {value_bytes}"
                )
            if len(tile.leaf_fingerprints) != leaf_size:
                raise _Failed(
                    Reason.MALFORMED_TILE,
                    f"tile {tile.index}: leaf of {len(tile.leaf_fingerprints)} bytes, expected {leaf_size}",
                )
            where = tile_position(challenge, tile.index)
            values = np.frombuffer(tile.values, dtype=VALUE_DTYPE).reshape(challenge.tile, challenge.tile)
            committed = int(np.frombuffer(tile.leaf_fingerprints, dtype=FINGERPRINT_DTYPE)[where.slot])
            if fingerprint_tile(values, keys) != committed:
                raise _Failed(
                    Reason.WRONG_FINGERPRINT,
                    f"tile {tile.index}: the fingerprint of the opened values differs from the one committed "
                    f"in leaf {where.leaf}",
                )
            try:
                verify_proof(
                    pending.root,
                    leaf_hash(where.leaf, tile.leaf_fingerprints),
                    where.leaf,
                    challenge.leaf_count,
                    tile.proof,
                )
            except MerkleProofError as error:
                raise _Failed(Reason.WRONG_PROOF, f"tile {tile.index} (leaf {where.leaf}): {error}") from None
            values_of[tile.index] = (where, values)
        # Each tile's product is small (tile x n by n x tile): one BLAS thread does it about as
        # fast, where a pool of threads spins between the products (four times the CPU time on
        # a 16-core host: bench/GPU.md).
        with _thread_pools().limit(limits=1, user_api="blas"):
            for index, (where, values) in values_of.items():
                expected = tile_product(
                    challenge.seed, where.round, where.tile_row, where.tile_col, challenge.tile, challenge.n
                )
                wrong = np.argwhere(values != expected)
                if len(wrong):
                    i, j = (int(x) for x in wrong[0])
                    raise _Failed(
                        Reason.WRONG_VALUES,
                        f"tile {index} (round {where.round}, tile row {where.tile_row}, tile column {where.tile_col}): "
                        f"{len(wrong)} of {values.size} values differ from the product, first at ({i}, {j}): "
                        f"got {int(values[i, j])}, expected {int(expected[i, j])}",
                    )

    def _settle(self, pending: _Pending, reason: Reason | None, detail: str, cpu_seconds: float) -> Verdict:
        challenge = pending.challenge
        required = pending.gpu_class.floor_ops_per_second * pending.gpu_count
        elapsed = (pending.t1 - pending.t0) if pending.t1 is not None else 0.0
        throughput = None
        if reason is None:
            timed = elapsed - pending.rtt_seconds
            if timed <= 0:
                reason = Reason.UNTIMEABLE
                detail = f"the answer took {elapsed:.6f} s, not more than the {pending.rtt_seconds:.6f} s round trip"
            else:
                throughput = challenge.ops / timed
                if throughput < required:
                    reason = Reason.BELOW_FLOOR
                    detail = (
                        f"measured {throughput / 1e9:,.1f} GOPS, below the floor of {required / 1e9:,.0f} GOPS "
                        f"({pending.gpu_count} x {pending.gpu_class.name})"
                    )
        verdict = Verdict(
            challenge_id=challenge.challenge_id.hex(),
            gpu_class=pending.gpu_class.name,
            gpu_count=pending.gpu_count,
            passed=reason is None,
            reason=reason,
            detail=detail,
            ops=challenge.ops,
            elapsed_seconds=elapsed,
            rtt_seconds=pending.rtt_seconds,
            throughput_ops_per_second=throughput,
            required_ops_per_second=required,
            verify_cpu_seconds=cpu_seconds,
        )
        pending.verdict = verdict
        log.info("challenge %s: %s %s", verdict.challenge_id, "passed" if verdict.passed else "failed", detail)
        return verdict
