"""``gpumarket bench``: benchmarks of the measurement code on this machine.

``gpumarket bench challenge --json`` runs one full throughput challenge (verifier and prover in
this process, every message through its wire bytes) and prints ONE JSON object: sizes, the
prover's time on the verifier's clock, the verifier's CPU time, the throughput, their ratio
(measured, and by operation counts) and the measured share of cheats caught when the prover
skips half of the tiles.

``gpumarket bench oracle --json`` measures the oracle: reports decided, signed and verified per
second on one core, and the median seconds from a job's end to its settlement on the embedded
chain (gpumarket.oracle.bench); it writes the JSON to ``--out`` too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import cast

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
    # describe() lists its devices
    devices = [str(d) for d in cast("list[object]", prover_description.get("devices", []))]
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


@bench.command("oracle")
@click.option(
    "--reports",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Distinct job reports timed through decide, sign, a peer's signature and the quorum.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Untimed reports first (first-call costs: imports, caches, the SQLite file).",
)
@click.option(
    "--settle-jobs",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Jobs settled on the embedded chain for settle_latency_seconds (0: skip that part).",
)
@click.option(
    "--job-seconds",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="How long each of those jobs runs.",
)
@click.option(
    "--job-poll-interval",
    type=click.FloatRange(min=0.01),
    default=None,
    help="The oracles' status polling of a running job [default: JobConfig's].",
)
@click.option(
    "--tick-interval",
    type=click.FloatRange(min=0.01),
    default=None,
    help="The oracles' loop period [default: OracleServiceConfig's].",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/oracle.json"),
    show_default=True,
    help="Where the JSON result is written.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def oracle(
    reports: int,
    warmup: int,
    settle_jobs: int,
    job_seconds: float,
    job_poll_interval: float | None,
    tick_interval: float | None,
    out_path: Path,
    as_json: bool,
) -> None:
    """Reports an oracle decides, signs and verifies per second on one core, and the median time
    from a job's end to its settlement on a local chain with three oracles (gpumarket.oracle.bench)."""
    from dataclasses import replace

    from gpumarket.oracle.bench import default_timings, run_bench

    timings = default_timings()
    if job_poll_interval is not None:
        timings = replace(timings, job_poll_interval_s=job_poll_interval)
    if tick_interval is not None:
        timings = replace(timings, tick_interval_s=tick_interval)
    result = run_bench(
        reports=reports, warmup=warmup, settle_jobs=settle_jobs, job_seconds=job_seconds, timings=timings
    )
    text = json.dumps(result, indent=2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text + "\n")
    if as_json:
        click.echo(text)
        return
    click.echo(
        f"reports_per_second     {result['reports_per_second']:.1f} "
        f"({reports} reports on one thread, {result['reports']['cpu_seconds']:.2f} CPU s)"
    )
    for stage, figures in result["reports"]["stages"].items():
        click.echo(
            f"  {stage:<12} median {figures['median_seconds'] * 1000:7.3f} ms  "
            f"mean {figures['mean_seconds'] * 1000:7.3f} ms  {figures['share']:6.1%}"
        )
    settlement = result["settlement"]
    if settlement is not None:
        click.echo(
            f"settle_latency_seconds {result['settle_latency_seconds']:.3f} (median of "
            f"{len(settlement['latencies_seconds'])} jobs; {settlement['basis']})"
        )
    click.echo(f"written to {out_path}")
