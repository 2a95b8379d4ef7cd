"""One whole challenge on this machine: verifier and prover in one process, every message
through its wire bytes, as the benchmark and bench/gpu_check.sh run it."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, replace
from typing import cast

import numpy as np

from gpumarket.measure.classes import GpuClass
from gpumarket.measure.messages import Challenge, Commitment, Opening, OpeningRequest
from gpumarket.measure.provers import TileProver, make_prover
from gpumarket.measure.provers.cheats import SkippingProver, skipping_pass_probability
from gpumarket.measure.verifier import Reason, Verdict, Verifier

__all__ = ["DetectionRun", "LocalRun", "detection_twin", "measure_detection", "run_local_challenge", "run_round_trip"]

# Failures that say nothing about skipped work (the answer was valid, only slow).
_NOT_DETECTION = (None, Reason.BELOW_FLOOR, Reason.UNTIMEABLE)
# Above this many operations a cheating run on numpy takes too long for a benchmark.
_CPU_DETECTION_OPS = 2 * 10**10


@dataclass(frozen=True)
class LocalRun:
    """A challenge run locally: sizes, timings (verifier's clock) and the verdict."""

    gpu_class: str
    backend: str
    devices: list[str]
    gpu_count: int
    m: int
    n: int
    p: int
    rounds: int
    tile: int
    k: int
    prove_seconds: float  # t1 - t0 on the verifier's clock: the prover's whole answer
    verify_seconds: float  # verifier CPU seconds spent checking the opening
    verify_wall_seconds: float
    verify_over_prove: float
    throughput_ops_per_second: float | None
    passed: bool
    reason: str | None
    detail: str
    opening_bytes: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_round_trip(
    verifier: Verifier, prover: TileProver, gpu_class: GpuClass, gpu_count: int = 1
) -> tuple[Verdict, int]:
    """Issue, commit, request, open and check, each message through ``to_bytes``/``parse``.

    Returns the verdict and the opening's size in bytes."""
    challenge = verifier.issue(gpu_class, gpu_count=gpu_count)
    commitment = prover.commit(Challenge.parse(challenge.to_bytes()))
    request = verifier.receive_commitment(Commitment.parse(commitment.to_bytes()))
    opening = prover.open(OpeningRequest.parse(request.to_bytes())).to_bytes()
    return verifier.check_opening(Opening.parse(opening)), len(opening)


def run_local_challenge(
    gpu_class: GpuClass,
    backend: str = "auto",
    *,
    prover: TileProver | None = None,
    verifier: Verifier | None = None,
    gpu_count: int | None = None,
) -> LocalRun:
    """Run one full challenge of ``gpu_class`` on this machine and report timings and outcome.

    ``gpu_count`` defaults to the number of devices the prover drives (1 for numpy).
    """
    prover = prover if prover is not None else make_prover(backend)
    verifier = verifier if verifier is not None else Verifier()
    described = prover.describe()
    # describe() lists its devices
    devices = [str(device) for device in cast("list[object]", described.get("devices", ["cpu"]))]
    if gpu_count is None:
        gpu_count = len(devices) if prover.backend == "torch" and devices != ["cpu"] else 1
    started = time.perf_counter()
    verdict, opening_bytes = run_round_trip(verifier, prover, gpu_class, gpu_count)
    wall = time.perf_counter() - started
    return LocalRun(
        gpu_class=gpu_class.name,
        backend=prover.backend,
        devices=devices,
        gpu_count=gpu_count,
        m=gpu_class.m,
        n=gpu_class.n,
        p=gpu_class.p,
        rounds=gpu_class.rounds * gpu_count,
        tile=gpu_class.tile,
        k=gpu_class.k,
        prove_seconds=verdict.elapsed_seconds,
        verify_seconds=verdict.verify_cpu_seconds,
        verify_wall_seconds=max(0.0, wall - verdict.elapsed_seconds),
        verify_over_prove=verdict.verify_cpu_seconds / verdict.elapsed_seconds,
        throughput_ops_per_second=verdict.throughput_ops_per_second,
        passed=verdict.passed,
        reason=verdict.reason.value if verdict.reason else None,
        detail=verdict.detail,
        opening_bytes=opening_bytes,
    )


@dataclass(frozen=True)
class DetectionRun:
    """Cheaters caught out of ``trials`` SkippingProver runs, beside the predicted rate."""

    q: float
    trials: int
    caught: int
    predicted_catch_rate: float  # 1 - C(qL, k) / C(L, k)
    bound_catch_rate: float  # 1 - q**k

    @property
    def rate(self) -> float:
        return self.caught / self.trials


def detection_twin(gpu_class: GpuClass) -> GpuClass:
    """The class itself when a numpy cheater can run it in seconds; otherwise a small copy with
    the same k and at least 16 k tiles. Detection depends only on k, the tile count and q, and
    with many tiles per opened tile it is the class's own q**k."""
    if gpu_class.ops_per_round * gpu_class.rounds <= _CPU_DETECTION_OPS:
        return gpu_class
    side, tile, per_leaf = 256, 16, 16
    tiles_per_round = (side // tile) ** 2
    rounds = -(-16 * gpu_class.k // tiles_per_round)
    return replace(gpu_class, m=side, n=side, p=side, tile=tile, tiles_per_leaf=per_leaf, rounds=rounds)


def measure_detection(gpu_class: GpuClass, q: float, trials: int, seed: int | None = None) -> DetectionRun:
    """Run ``trials`` challenges against a prover that computes only a fraction q of the tiles."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    rng = np.random.default_rng(seed)
    cheater = SkippingProver(q, rng=rng)
    # Seeded: the verifier's seeds and tile choices come from ``seed`` too (reproducible runs).
    verifier = Verifier(randomness=random.Random(seed), seed_source=rng.bytes) if seed is not None else Verifier()
    caught = 0
    for _ in range(trials):
        verdict, _ = run_round_trip(verifier, cheater, gpu_class)
        caught += verdict.reason not in _NOT_DETECTION
    probe = Verifier().issue(gpu_class)
    k = min(gpu_class.k, probe.total_tiles)
    predicted = 1.0 - skipping_pass_probability(probe.total_tiles, cheater.computed_tiles(probe), k)
    return DetectionRun(q=q, trials=trials, caught=caught, predicted_catch_rate=predicted, bound_catch_rate=1.0 - q**k)
