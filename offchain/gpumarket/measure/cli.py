"""``gpumarket bench``: benchmarks of the measurement code on this machine.

``gpumarket bench challenge --json`` runs one full throughput challenge (verifier and prover in
this process, every message through its wire bytes) and prints ONE JSON object: sizes, the
prover's time on the verifier's clock, the verifier's CPU time, the throughput, their ratio
(measured, and by operation counts) and the measured share of cheats caught when the prover
skips half of the tiles.
"""

from __future__ import annotations

import json
import logging

import click

from gpumarket.measure.classes import CPU_DEV, GPU_CLASSES, GpuClass, class_by_name, class_for_device_name
from gpumarket.measure.cost import challenge_cost
from gpumarket.measure.local import detection_twin, measure_detection, run_local_challenge
from gpumarket.measure.provers import BACKENDS, ProverError, make_prover

__all__ = ["bench"]

log = logging.getLogger(__name__)


@click.group()
def bench() -> None:
    """Benchmarks of the measurement code on this machine."""


def _default_class(prover_description: dict[str, object]) -> GpuClass:
    """The class of the first GPU the prover drives, or cpu-dev without one."""
    devices = [str(d) for d in prover_description.get("devices", [])]  # type: ignore[union-attr]
    if not devices or devices[0] == "cpu":
        return CPU_DEV
    matched = class_for_device_name(devices[0])
    if matched is None:
        raise click.ClickException(f"no GPU class matches {devices[0]!r}; pass --gpu-class")
    return matched


@bench.command("challenge")
@click.option(
    "--backend",
    type=click.Choice(["auto", *BACKENDS]),
    default="auto",
    show_default=True,
    help="auto: torch when it sees a CUDA GPU, numpy otherwise.",
)
@click.option(
    "--gpu-class",
    "class_name",
    type=click.Choice([c.name for c in GPU_CLASSES]),
    default=None,
    help="Class whose sizes and floor to use [default: the GPU's class, cpu-dev without a GPU].",
)
@click.option(
    "--gpu-count",
    type=click.IntRange(min=1),
    default=None,
    help="GPUs the challenge is sized and floored for [default: the devices the prover drives].",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Cheating runs (prover skips half the tiles) for detect_rate_at_q_half.",
)
@click.option(
    "--warmup/--no-warmup",
    default=True,
    show_default=True,
    help="Run one untimed challenge first (first-call costs: threads, allocations, compilation).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def challenge(
    backend: str, class_name: str | None, gpu_count: int | None, trials: int, warmup: bool, as_json: bool
) -> None:
    """Time one throughput challenge and measure how often a half-skipping prover is caught."""
    try:
        prover = make_prover(backend)
    except ProverError as error:
        raise click.ClickException(str(error)) from None
    gpu_class = class_by_name(class_name) if class_name else _default_class(prover.describe())
    if warmup:
        run_local_challenge(gpu_class, prover=prover, gpu_count=gpu_count)
    run = run_local_challenge(gpu_class, prover=prover, gpu_count=gpu_count)
    twin = detection_twin(gpu_class)
    detection = measure_detection(twin, q=0.5, trials=trials)
    cost = challenge_cost(gpu_class, run.gpu_count)
    result = {
        "backend": run.backend,
        "devices": run.devices,
        "matmul": prover.describe().get("matmul"),
        "gpu_class": run.gpu_class,
        "gpu_count": run.gpu_count,
        "m": run.m,
        "n": run.n,
        "p": run.p,
        "rounds": run.rounds,
        "tile": run.tile,
        "k": run.k,
        "prove_seconds": round(run.prove_seconds, 6),
        "verify_seconds": round(run.verify_seconds, 6),
        "verify_wall_seconds": round(run.verify_wall_seconds, 6),
        "throughput_tops": (run.throughput_ops_per_second or 0.0) / 1e12,
        "floor_tops": gpu_class.floor_ops_per_second * run.gpu_count / 1e12,
        "passed": run.passed,
        "reason": run.reason,
        "detail": run.detail,
        "verify_over_prove": round(run.verify_over_prove, 6),
        "verify_over_prove_ops": cost.verify_over_prove,
        "opening_bytes": run.opening_bytes,
        "detect_rate_at_q_half": detection.rate,
        "detect_trials": detection.trials,
        "detect_predicted_at_q_half": detection.predicted_catch_rate,
        "detect_sizes": {"m": twin.m, "n": twin.n, "p": twin.p, "rounds": twin.rounds, "tile": twin.tile, "k": twin.k},
    }
    if as_json:
        click.echo(json.dumps(result, sort_keys=False))
        return
    click.echo(
        f"{run.gpu_class} on {run.backend} ({', '.join(run.devices)}), {run.m}x{run.n}x{run.p} x {run.rounds} rounds"
    )
    click.echo(
        f"  prove  {run.prove_seconds:.3f} s  ->  {result['throughput_tops']:.4f} TOPS "
        f"(floor {result['floor_tops']:.4f})"
    )
    click.echo(
        f"  verify {run.verify_seconds:.4f} CPU s  ->  verify/prove {run.verify_over_prove:.4f} "
        f"(by op counts {cost.verify_over_prove:.2e})"
    )
    click.echo(f"  {'PASSED' if run.passed else 'FAILED: ' + run.detail}")
    click.echo(
        f"  half-skipping prover caught {detection.caught}/{detection.trials} "
        f"(predicted rate {detection.predicted_catch_rate:.6f})"
    )
