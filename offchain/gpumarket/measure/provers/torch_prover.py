"""The torch prover: every visible CUDA GPU at once (or torch's CPU device where there is none).

Each device takes every g-th round (g devices) in its own thread and, per round, generates B
(n x p) and then A block by block, multiplies on the tensor cores and fingerprints the block
of C on the device; only the fingerprints (8 bytes a tile) come back to the host, where the
base class hashes them into Merkle leaves while the devices go on with the next rounds. Each
device thread queues round r+1 before it waits for round r's fingerprints (an asynchronous copy
into pinned memory), so the device does not idle while the host collects a round.

Matmul paths, all exact (entries are in -8..7, so every partial sum is an integer of magnitude
at most 64 * n <= 2**24):

* ``int8``: ``torch._int_mm`` (int8 x int8 -> int32 on the int8 tensor cores);
* ``fp16``: fp16 inputs with fp32 accumulation AND fp32 output (``torch.mm(..., out_dtype=)``),
  exact because the sums stay below 2**24 (an fp16 output would round above 2048);
* ``fp32``: plain float32 (or TF32, also exact: 4-bit entries fit its mantissa) matmul.

``auto`` probes them in that order on each device with a small product checked against numpy
and keeps the first that is exact. On CUDA the generation and fingerprint code can be fused by
``torch.compile`` (one pass over memory instead of one per operator); it is used when it
compiles and gives the eager result on a probe, and skipped otherwise (GPUMARKET_TORCH_COMPILE=0
turns it off).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gpumarket.measure.fingerprint import fingerprint_blocks, fingerprint_keys
from gpumarket.measure.matrices import MatrixKeys, entries_from_codes, index_codes, matrix_keys
from gpumarket.measure.messages import Challenge
from gpumarket.measure.provers.base import ProverError, TileProver

try:
    import torch
except ImportError as error:  # pragma: no cover - exercised where torch is absent
    raise ImportError("the torch prover needs torch: pip install -e '.[gpu]'") from error

__all__ = ["MATMUL_PATHS", "TorchProver", "visible_devices"]

log = logging.getLogger(__name__)

MATMUL_PATHS = ("int8", "fp16", "fp32")
# Bytes of int64 temporaries per block: generous on a GPU (fewer, larger kernels), modest on CPU.
_BLOCK_BYTES = {"cuda": 512 * 1024 * 1024, "cpu": 32 * 1024 * 1024}


def visible_devices() -> list[torch.device]:
    """Every CUDA device torch sees, or the CPU when there is none."""
    if torch.cuda.is_available():
        return [torch.device("cuda", index) for index in range(torch.cuda.device_count())]
    return [torch.device("cpu")]


def _entries(row_codes: torch.Tensor, col_codes: torch.Tensor) -> torch.Tensor:
    # The shared definitions are array-generic (numpy or torch): name the type they return here.
    entries: torch.Tensor = entries_from_codes(row_codes, col_codes)
    return entries.to(torch.int8)


def _fingerprints(block: torch.Tensor, weights: torch.Tensor, offsets: torch.Tensor, tile: int) -> torch.Tensor:
    fingerprints: torch.Tensor = fingerprint_blocks(block.to(torch.int64), weights, offsets, tile)
    return fingerprints


def _matmul(path: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if path == "int8":
        return lambda a, b: torch._int_mm(a, b)
    if path == "fp16":
        return lambda a, b: torch.mm(a.to(torch.float16), b.to(torch.float16), out_dtype=torch.float32)
    if path == "fp32":
        return lambda a, b: torch.mm(a.to(torch.float32), b.to(torch.float32))
    raise ValueError(f"unknown matmul path {path!r}; choose from {MATMUL_PATHS}")


class _DeviceKernels:
    """The three kernels of one device: entry generation, matmul, fingerprints."""

    def __init__(self, device: torch.device, matmul_path: str, use_compile: bool) -> None:
        self.device = device
        self.entries: Callable[..., torch.Tensor] = _entries
        self.fingerprints: Callable[..., torch.Tensor] = _fingerprints
        self.matmul_path = self._choose_matmul(matmul_path)
        self.matmul = _matmul(self.matmul_path)
        self.compiled = use_compile and self._try_compile()

    def _probe_operands(self) -> tuple[torch.Tensor, torch.Tensor, npt.NDArray[np.int64]]:
        generator = np.random.default_rng(7)
        a = generator.integers(-8, 8, size=(32, 64), dtype=np.int64)
        b = generator.integers(-8, 8, size=(64, 32), dtype=np.int64)

        def to(x: npt.NDArray[np.int64]) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int8)).to(self.device)

        # The right operand in the layout _round uses: a transposed (column-major) view.
        return to(a), to(b.T).t(), a @ b

    def _choose_matmul(self, requested: str) -> str:
        candidates: tuple[str, ...]
        if requested == "auto":
            # Tensor cores first on a GPU; on a CPU, float32 BLAS is the fast one.
            candidates = MATMUL_PATHS if self.device.type == "cuda" else ("fp32", "int8")
        else:
            candidates = (requested,)
        a, b, expected = self._probe_operands()
        for path in candidates:
            try:
                got = _matmul(path)(a, b).to(torch.int64).cpu().numpy()
            except (RuntimeError, NotImplementedError) as error:
                log.info("%s: matmul path %s unavailable: %s", self.device, path, str(error).splitlines()[0])
                continue
            if np.array_equal(got, expected):
                return path
            log.warning("%s: matmul path %s is not exact; skipping it", self.device, path)
        raise ProverError(f"{self.device}: no exact matmul path among {candidates}")

    def _try_compile(self) -> bool:
        """Fuse generation and fingerprints with torch.compile; keep eager unless it matches."""
        try:
            entries = torch.compile(_entries, dynamic=False)
            fingerprints = torch.compile(_fingerprints, dynamic=False)
            codes = torch.arange(64, dtype=torch.int64, device=self.device)
            block = torch.arange(64 * 64, dtype=torch.int64, device=self.device).reshape(64, 64) - 2000
            tables = torch.arange(16 * 16, dtype=torch.int64, device=self.device).reshape(16, 16)
            same = torch.equal(entries(codes[:, None], codes[None, :]), _entries(codes[:, None], codes[None, :]))
            same = same and torch.equal(
                fingerprints(block, tables, tables, 16), _fingerprints(block, tables, tables, 16)
            )
        except Exception as error:  # noqa: BLE001 - any compiler failure means: stay eager
            log.warning("%s: torch.compile unavailable, running eager: %s", self.device, str(error).splitlines()[0])
            return False
        if not same:
            log.warning("%s: compiled kernels differ from eager on a probe; running eager", self.device)
            return False
        self.entries = self._or_eager(entries, _entries)
        self.fingerprints = self._or_eager(fingerprints, _fingerprints)
        return True

    def _or_eager(
        self, compiled: Callable[..., torch.Tensor], eager: Callable[..., torch.Tensor]
    ) -> Callable[..., torch.Tensor]:
        """``compiled``, but the eager function from the first time compiling a new shape fails."""
        state = {"broken": False}

        def run(*args: object) -> torch.Tensor:
            if not state["broken"]:
                try:
                    return compiled(*args)
                except Exception as error:  # noqa: BLE001 - a compiler failure: fall back, keep going
                    log.warning("%s: compiled %s failed, running eager: %s", self.device, eager.__name__, error)
                    state["broken"] = True
                    self.compiled = False
            return eager(*args)

        return run


class TorchProver(TileProver):
    backend = "torch"

    def __init__(
        self,
        devices: Sequence[str | torch.device] | None = None,
        matmul: str = "auto",
        use_compile: bool | None = None,
    ) -> None:
        super().__init__()
        chosen = [torch.device(d) for d in devices] if devices else visible_devices()
        if use_compile is None:
            use_compile = os.environ.get("GPUMARKET_TORCH_COMPILE", "1") != "0"
        self._kernels = [_DeviceKernels(device, matmul, use_compile and device.type == "cuda") for device in chosen]

    @property
    def devices(self) -> list[torch.device]:
        return [kernels.device for kernels in self._kernels]

    def describe(self) -> dict[str, object]:
        names = [torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu" for d in self.devices]
        return {
            "backend": self.backend,
            "devices": names,
            "matmul": [k.matmul_path for k in self._kernels],
            "compiled": [k.compiled for k in self._kernels],
            "torch": torch.__version__,
        }

    def round_fingerprints(self, challenge: Challenge) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
        results: queue.Queue[tuple[int, npt.NDArray[np.int64]] | BaseException] = queue.Queue()
        stop = threading.Event()

        def work(kernels: _DeviceKernels, rounds: range) -> None:
            # One round stays queued on the device while the previous one's fingerprints come
            # back: the device never waits for the host between rounds.
            try:
                in_flight: _RoundInFlight | None = None
                for round_index in rounds:
                    if stop.is_set():
                        return
                    launched = self._launch(kernels, challenge, round_index)
                    if in_flight is not None:
                        results.put((in_flight.round_index, in_flight.collect()))
                    in_flight = launched
                if in_flight is not None:
                    results.put((in_flight.round_index, in_flight.collect()))
            except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises
                results.put(error)

        count = len(self._kernels)
        threads = [
            threading.Thread(target=work, args=(kernels, range(i, challenge.rounds, count)), daemon=True)
            for i, kernels in enumerate(self._kernels)
        ]
        for thread in threads:
            thread.start()
        try:
            for _ in range(challenge.rounds):
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    def _round(self, kernels: _DeviceKernels, challenge: Challenge, round_index: int) -> npt.NDArray[np.int64]:
        """Round ``round_index``'s tile fingerprints, computed on ``kernels``' device."""
        return self._launch(kernels, challenge, round_index).collect()

    def _launch(self, kernels: _DeviceKernels, challenge: Challenge, round_index: int) -> _RoundInFlight:
        """Queue round ``round_index`` on ``kernels``' device; its fingerprints are collected later."""
        device, tile, n = kernels.device, challenge.tile, challenge.n
        keys = matrix_keys(challenge.seed, round_index)
        fp_keys = fingerprint_keys(challenge.seed, tile)

        def arange(count: int) -> torch.Tensor:
            return torch.arange(count, dtype=torch.int64, device=device)

        positions = arange(tile * tile).reshape(tile, tile)
        weights, offsets = fp_keys.weights(positions), fp_keys.offsets(positions)
        budget = _BLOCK_BYTES.get(device.type, _BLOCK_BYTES["cpu"])

        with torch.inference_mode(), _on(device):
            b = _transposed_b(kernels, keys, n, challenge.p, budget).t()
            a_col_codes = index_codes(arange(n), keys.a_col)[None, :]
            out = []
            rows_per_block = _block(budget, max(n, challenge.p), challenge.m, multiple=tile)
            for start in range(0, challenge.m, rows_per_block):
                a = _a_block(kernels, keys, start, rows_per_block, a_col_codes)
                out.append(kernels.fingerprints(kernels.matmul(a, b), weights, offsets, tile))
            return _RoundInFlight.copy_back(round_index, torch.cat(out).reshape(-1))


def _transposed_b(kernels: _DeviceKernels, keys: MatrixKeys, n: int, p: int, budget: int) -> torch.Tensor:
    """A round's B built transposed, (p x n) row-major, in blocks of columns within ``budget``.

    Used as ``.t()``: the column-major right operand the int8 GEMMs of cuBLASLt want. Entry (l, j)
    of B is the mixer of row_code[l] ^ col_code[j], and xor commutes, so this is B's transpose
    exactly."""
    device = kernels.device
    b_row_codes = index_codes(torch.arange(n, dtype=torch.int64, device=device), keys.b_row)[None, :]
    bt = torch.empty((p, n), dtype=torch.int8, device=device)
    cols_per_block = _block(budget, n, p, multiple=1)
    for start in range(0, p, cols_per_block):
        cols = torch.arange(start, start + cols_per_block, dtype=torch.int64, device=device)
        bt[start : start + cols_per_block] = kernels.entries(index_codes(cols, keys.b_col)[:, None], b_row_codes)
    return bt


def _a_block(
    kernels: _DeviceKernels, keys: MatrixKeys, start: int, count: int, a_col_codes: torch.Tensor
) -> torch.Tensor:
    """Rows ``start`` to ``start + count`` of a round's A (``a_col_codes``: its column codes)."""
    rows = torch.arange(start, start + count, dtype=torch.int64, device=kernels.device)
    return kernels.entries(index_codes(rows, keys.a_row)[:, None], a_col_codes)


class _RoundInFlight:
    """A round's fingerprints on their way to the host: an asynchronous copy into pinned memory
    on a CUDA device (done when ``collect`` returns), the tensor itself on the CPU."""

    def __init__(self, round_index: int, host: torch.Tensor, copied: torch.cuda.Event | None) -> None:
        self.round_index = round_index
        self._host = host
        self._copied = copied

    @classmethod
    def copy_back(cls, round_index: int, fingerprints: torch.Tensor) -> _RoundInFlight:
        if fingerprints.device.type != "cuda":
            return cls(round_index, fingerprints, None)
        host = torch.empty(fingerprints.shape, dtype=fingerprints.dtype, pin_memory=True)
        host.copy_(fingerprints, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        return cls(round_index, host, copied)

    def collect(self) -> npt.NDArray[np.int64]:
        if self._copied is not None:
            self._copied.synchronize()
        fingerprints: npt.NDArray[np.int64] = self._host.numpy()
        return fingerprints


def _block(budget: int, width: int, total: int, multiple: int) -> int:
    """The largest power-of-two count (a multiple of ``multiple``, dividing ``total``) of lines
    of ``width`` int64 values that fits ``budget`` bytes."""
    count = multiple
    while count * 2 <= total and count * 2 * width * 8 <= budget:
        count *= 2
    return count


def _on(device: torch.device) -> Any:
    """Make ``device`` the calling thread's current CUDA device (a no-op on the CPU)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
