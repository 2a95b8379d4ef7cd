"""The GPU class table: each class's throughput floor and the sizes of its challenge.

Ids and floors are the ones deploy/params/default.yaml registers on chain
(``GpuMarket.set_gpu_class``); tests/offchain/measure/test_classes.py checks the two agree.
The floor is PER GPU in GOPS (1e9 int8 operations per second, counted as the challenge does:
``2*m*n*p`` per matmul); a provider with ``g`` GPUs must measure ``g * floor``.

How a floor is chosen (the rule written beside the YAML): from a measurement where a card of
the class has run the challenge (bench/GPU.md), else from its published peak.

* Measured (h100-sxm): 60% of what the card measured end to end through the torch prover, so
  load, clocks, a slower host and the round trip have 40% to take before an honest card fails.
  An H200 measured ~790 TOPS; the int8 GEMM itself ran at ~980, half the published peak, so
  the published peak is no guide to what a card achieves.
* Published only (the others, not yet measured): half of 80% of the dense int8 peak, and above
  the int8 PEAK of every slower card in the table.

Published dense int8 peaks (docs/PROTOCOL.md, "GPU classes"): H100 SXM 1,979 TOPS, A100 624,
RTX 4090 660, L4 and A10 ~250.

How the sizes are chosen (see docs/ARCHITECTURE.md, "The throughput challenge"):

* ``n`` (the inner dimension) is large because the prover's per-element work on C (the
  fingerprint) costs a fixed number of memory passes per element while the matmul does
  ``2n`` operations per element: the larger ``n``, the smaller that overhead.
* ``rounds`` makes the timed work last a few seconds at the class's achievable speed, so the
  round-trip time and its jitter are small beside it.
* ``tile`` and ``k`` set the verifier's work, ``k`` matmuls of ``tile x n`` by ``n x tile``
  plus regenerating those rows and columns; ``k`` also sets the detection probability: a
  prover that computes a fraction q of the tiles passes with probability at most ``q**k``.
* ``tiles_per_leaf`` groups tile fingerprints into Merkle leaves, so the tree has thousands
  of leaves rather than tens of millions (an opening reveals its leaf's fingerprints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpumarket.measure.fingerprint import MAX_TILE
from gpumarket.measure.matrices import ENTRY_MIN

__all__ = [
    "CPU_CLASSES",
    "CPU_DEV",
    "CPU_SMALL",
    "GPU_CLASSES",
    "GpuClass",
    "class_by_id",
    "class_by_name",
    "class_for_device_name",
]

# Entries lie in -8..7, so a product term is at most 64 in magnitude and an exact dot product
# of length n stays below 64*n. fp32 accumulation is exact below 2**24 (the fp16 tensor-core
# path and numpy's sgemm): n <= 2**18. int32 accumulation (torch._int_mm) would allow more.
MAX_EXACT_FP32 = 2**24
MAX_INNER_DIMENSION = MAX_EXACT_FP32 // (ENTRY_MIN * ENTRY_MIN)


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class GpuClass:
    """One row of the class table.

    ``m x n`` by ``n x p`` is one round's matmul; ``tile`` divides ``m`` and ``p``;
    ``k`` tiles are opened per challenge; ``tiles_per_leaf`` consecutive tile fingerprints
    make one Merkle leaf. ``device_patterns`` are regular expressions (case-insensitive,
    ``re.search``) over the device name NVML reports, used to propose a class for a card.
    ``measured_tops`` is what a card of the class measured end to end through the torch prover
    (bench/GPU.md), where one has: its floor then comes from that, not from the peak.
    """

    id: int
    name: str
    floor_gops_per_gpu: int
    m: int
    n: int
    p: int
    rounds: int
    tile: int
    k: int
    tiles_per_leaf: int
    peak_int8_tops: float | None = None
    measured_tops: float | None = None
    device_patterns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.id <= 2**16 - 1:
            problems.append(f"id {self.id} is not a uint16 above 0")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.name) or len(self.name) > 32:
            problems.append(f"name {self.name!r} is not a lowercase slug of at most 32 characters")
        if self.floor_gops_per_gpu < 1:
            problems.append(f"floor {self.floor_gops_per_gpu} GOPS is below 1")
        for label, size in (("m", self.m), ("n", self.n), ("p", self.p), ("tile", self.tile)):
            if not _is_power_of_two(size):
                problems.append(f"{label}={size} is not a power of two")
        if self.n > MAX_INNER_DIMENSION:
            problems.append(f"n={self.n} exceeds {MAX_INNER_DIMENSION}: fp32 sums would not stay exact")
        if self.tile > min(self.m, self.p, MAX_TILE):
            problems.append(f"tile={self.tile} exceeds m={self.m}, p={self.p} or {MAX_TILE}")
        if self.rounds < 1:
            problems.append(f"rounds={self.rounds} is below 1")
        if not _is_power_of_two(self.tiles_per_leaf) or self.tiles_per_leaf > self.tiles_per_round:
            problems.append(
                f"tiles_per_leaf={self.tiles_per_leaf} is not a power of two dividing "
                f"the {self.tiles_per_round} tiles of a round"
            )
        if not 1 <= self.k <= self.tiles_per_round * self.rounds:
            problems.append(f"k={self.k} is not between 1 and the number of tiles")
        if problems:
            raise ValueError(f"gpu class {self.name!r}: " + "; ".join(problems))

    @property
    def tiles_per_round(self) -> int:
        return (self.m // self.tile) * (self.p // self.tile)

    @property
    def ops_per_round(self) -> int:
        """Operations of one round's matmul, counted as the floor counts them."""
        return 2 * self.m * self.n * self.p

    @property
    def floor_ops_per_second(self) -> int:
        return self.floor_gops_per_gpu * 10**9

    def matches_device(self, device_name: str) -> bool:
        return any(re.search(pattern, device_name, re.IGNORECASE) for pattern in self.device_patterns)


CPU_DEV = GpuClass(
    # A CPU core standing in for a GPU so that every path runs on a 2-core machine: proving
    # takes a few tenths of a second with numpy and the verifier stays under 5% of that.
    id=1,
    name="cpu-dev",
    floor_gops_per_gpu=10,
    m=1024,
    n=1024,
    p=1024,
    rounds=8,
    tile=16,
    k=16,
    tiles_per_leaf=64,
)

CPU_SMALL = GpuClass(
    # A CPU core standing in for a GPU where many simulated providers share one machine (the
    # market benchmark, `gpumarket bench market`): one GPU's challenge is an eighth of
    # cpu-dev's operations and proves in about 0.08 s on a free core, so thousands of
    # challenges fit in minutes, and at its 1 GOPS floor an answer may take 2 s, which absorbs
    # the round trips of a saturated machine. Never a real provider's class: it proves nothing
    # about hardware beyond "a CPU core".
    id=6,
    name="cpu-small",
    floor_gops_per_gpu=1,
    m=256,
    n=1024,
    p=256,
    rounds=16,
    tile=16,
    k=16,
    tiles_per_leaf=16,
)

# The classes a CPU stands in for: chosen by name, never matched to a device.
CPU_CLASSES: tuple[GpuClass, ...] = (CPU_DEV, CPU_SMALL)

GPU_CLASSES: tuple[GpuClass, ...] = (
    CPU_DEV,
    GpuClass(
        # H100 SXM and H200 (the same tensor cores): an H200 measured ~790,000 GOPS end to end
        # (bench/GPU.md); the floor is 60% of that. It is below the int8 PEAK of an A100 (624
        # TOPS), which would have to run the challenge at 75% of its peak to pass; the H200 ran
        # it at 40% of its own.
        id=2,
        name="h100-sxm",
        floor_gops_per_gpu=470_000,
        m=16384,
        n=16384,
        p=16384,
        rounds=512,
        tile=64,
        k=64,
        tiles_per_leaf=1024,
        peak_int8_tops=1979.0,
        measured_tops=789.0,
        device_patterns=(r"\bH100\b", r"\bH200\b", r"\bGH200\b"),
    ),
    GpuClass(
        # A100: 80% of 624 TOPS is ~500,000 GOPS, half of it ~250,000; raised to 260,000 to
        # stay above the ~250 TOPS int8 peak of L4 and A10. The RTX 4090's int8 peak (660)
        # is within 6% of the A100's, so no floor separates those two: either passes as the
        # other, which sells the same throughput (the market pays for measured throughput).
        id=3,
        name="a100",
        floor_gops_per_gpu=260_000,
        m=16384,
        n=16384,
        p=16384,
        rounds=160,
        tile=64,
        k=64,
        tiles_per_leaf=1024,
        peak_int8_tops=624.0,
        device_patterns=(r"\bA100\b",),
    ),
    GpuClass(
        # RTX 4090: 80% of 660 TOPS is ~528,000 GOPS, half of it 264,000, above the L4/A10
        # peak (~250). 24 GB of memory bounds the sizes (as for L4/A10).
        id=4,
        name="rtx4090",
        floor_gops_per_gpu=264_000,
        m=16384,
        n=16384,
        p=16384,
        rounds=160,
        tile=64,
        k=64,
        tiles_per_leaf=1024,
        peak_int8_tops=660.0,
        device_patterns=(r"\bRTX 4090\b",),
    ),
    GpuClass(
        # L4 / A10: 80% of ~250 TOPS is ~200,000 GOPS, half of it 100,000. Only cpu-dev is
        # slower in the table; older cards with int8 peaks above 100 TOPS (a T4 is 130) are
        # not separated from this class.
        id=5,
        name="l4-a10",
        floor_gops_per_gpu=100_000,
        m=16384,
        n=16384,
        p=16384,
        rounds=64,
        tile=64,
        k=64,
        tiles_per_leaf=1024,
        peak_int8_tops=250.0,
        device_patterns=(r"\bL4\b", r"\bA10G?\b"),
    ),
    CPU_SMALL,
)


def _check_unique(classes: tuple[GpuClass, ...]) -> None:
    for attribute in ("id", "name"):
        values = [getattr(gpu_class, attribute) for gpu_class in classes]
        if len(set(values)) != len(values):
            raise ValueError(f"duplicate gpu class {attribute} in the class table: {values}")


_check_unique(GPU_CLASSES)
_BY_NAME = {gpu_class.name: gpu_class for gpu_class in GPU_CLASSES}
_BY_ID = {gpu_class.id: gpu_class for gpu_class in GPU_CLASSES}


def class_by_name(name: str) -> GpuClass:
    """The class called ``name``; KeyError naming the known classes otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown gpu class {name!r}; known: {', '.join(_BY_NAME)}") from None


def class_by_id(class_id: int) -> GpuClass:
    """The class with on-chain id ``class_id``; KeyError naming the known ids otherwise."""
    try:
        return _BY_ID[class_id]
    except KeyError:
        raise KeyError(f"unknown gpu class id {class_id}; known: {sorted(_BY_ID)}") from None


def class_for_device_name(device_name: str) -> GpuClass | None:
    """The class whose device patterns match an NVML device name (``"NVIDIA H100 80GB HBM3"``),
    or None when no GPU class claims it. cpu-dev has no patterns: it is chosen explicitly."""
    matches = [gpu_class for gpu_class in GPU_CLASSES if gpu_class.matches_device(device_name)]
    if len(matches) > 1:
        raise ValueError(f"device {device_name!r} matches several classes: {[c.name for c in matches]}")
    return matches[0] if matches else None
