"""Where a throughput challenge's time goes on a CUDA GPU: each phase of one round, timed apart.

    python -m bench.gpu_phases [--gpu-class h100-sxm] [--rounds 16] [--out FILE.json]

Run on a machine with an NVIDIA GPU and torch (bench/gpu_check.sh says how to carry the rest).
One round of the challenge builds B (p x n) and A (m x n, in row blocks) from the seed, multiplies
them on the int8 tensor cores and fingerprints every tile of the product. This times, with CUDA
events over ``--rounds`` rounds after a warm-up, each of those phases alone (the same kernels the
prover runs, compiled as it compiles them), then the prover's whole round and its whole pipeline
(rounds streamed to the CPU, Merkle leaves hashed there), and prints one JSON object with each
phase's milliseconds per round and the throughput (TOPS: 2 m n p per round) each would allow.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gpumarket.measure.classes import class_by_name
from gpumarket.measure.fingerprint import fingerprint_keys
from gpumarket.measure.matrices import index_codes, matrix_keys
from gpumarket.measure.messages import Challenge
from gpumarket.measure.provers.torch_prover import _BLOCK_BYTES, TorchProver, _a_block, _block, _transposed_b


def _cuda_ms(work: Callable[[], object], repeats: int) -> float:
    """Milliseconds per call of ``work`` on the current stream, after one untimed call."""
    work()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        work()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def _square_int_mm(m: int, n: int, p: int, device: torch.device) -> Callable[[], object]:
    a = torch.randint(-8, 8, (m, n), dtype=torch.int8, device=device)
    bt = torch.randint(-8, 8, (p, n), dtype=torch.int8, device=device)
    return lambda: torch._int_mm(a, bt.t())


def measure(gpu_class: str, rounds: int) -> dict[str, object]:
    cls = class_by_name(gpu_class)
    challenge = Challenge(
        challenge_id=secrets.token_bytes(16),
        seed=secrets.token_bytes(32),
        gpu_class=cls.id,
        m=cls.m,
        n=cls.n,
        p=cls.p,
        rounds=cls.rounds,
        tile=cls.tile,
        tiles_per_leaf=cls.tiles_per_leaf,
    )
    prover = TorchProver(devices=["cuda:0"])
    kernels = prover._kernels[0]
    device, tile, n, m, p = kernels.device, cls.tile, cls.n, cls.m, cls.p
    keys = matrix_keys(challenge.seed, 0)
    fp_keys = fingerprint_keys(challenge.seed, tile)

    def arange(count: int) -> torch.Tensor:
        return torch.arange(count, dtype=torch.int64, device=device)

    positions = arange(tile * tile).reshape(tile, tile)
    weights, offsets = fp_keys.weights(positions), fp_keys.offsets(positions)
    budget = _BLOCK_BYTES["cuda"]
    rows_per_block = _block(budget, max(n, p), m, multiple=tile)
    a_col_codes = index_codes(arange(n), keys.a_col)[None, :]

    with torch.inference_mode():

        def build_b() -> torch.Tensor:
            return _transposed_b(kernels, keys, n, p, budget)

        def build_a_blocks() -> torch.Tensor:
            for start in range(0, m, rows_per_block):  # one block alive at a time, as in a round
                block = _a_block(kernels, keys, start, rows_per_block, a_col_codes)
            return block

        b = build_b().t()
        a = build_a_blocks()
        product = kernels.matmul(a, b)
        blocks = m // rows_per_block

        def matmuls() -> None:
            for _ in range(blocks):
                kernels.matmul(a, b)

        def fingerprints() -> None:
            for _ in range(blocks):
                kernels.fingerprints(product, weights, offsets, tile)

        def whole_round() -> None:
            prover._round(kernels, challenge, 0)

        phases = {
            "build_b": _cuda_ms(build_b, rounds),
            "build_a": _cuda_ms(build_a_blocks, rounds),
            "matmul": _cuda_ms(matmuls, rounds),
            "fingerprints": _cuda_ms(fingerprints, rounds),
            "round": _cuda_ms(whole_round, rounds),
        }
        # A raw square product of the same size, one call: the GEMM library's own rate here.
        phases["matmul_one_call"] = _cuda_ms(_square_int_mm(m, n, p, device), rounds)

    pipeline_rounds = min(cls.rounds, 8 * rounds)
    short = challenge.model_copy(update={"rounds": pipeline_rounds})
    started = time.perf_counter()
    for _ in prover.round_fingerprints(short):
        pass
    pipeline_s = time.perf_counter() - started

    ops = 2.0 * m * n * p
    per_round = {name: round(ms, 3) for name, ms in phases.items()}
    per_round["pipeline"] = round(1000 * pipeline_s / pipeline_rounds, 3)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "gpu_class": cls.name,
        "sizes": {"m": m, "n": n, "p": p, "tile": tile, "rows_per_block": rows_per_block, "blocks": blocks},
        "prover": prover.describe(),
        "timed_rounds": rounds,
        "pipeline_rounds": pipeline_rounds,
        "ms_per_round": per_round,
        "tops_if_only": {name: round(ops / (ms / 1000) / 1e12, 1) for name, ms in per_round.items() if ms > 0},
        "floor_tops": cls.floor_gops_per_gpu / 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-class", default="h100-sxm")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_phases: no CUDA device visible to torch", file=sys.stderr)
        return 2
    result = json.dumps(measure(args.gpu_class, args.rounds), indent=2)
    print(result)
    if args.out:
        args.out.write_text(result + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
