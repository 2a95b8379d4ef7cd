"""``gpumarket bench market``: the whole market on this machine under N concurrent jobs.

Anvil, the contracts, three oracle processes and simulated agents (real HTTP, real challenges,
a job is a timer) for each N of ``--jobs``; each settlement mode's load measured
(gpumarket.marketbench); ``--out-dir``/market.json and market.png written after every N. Exit
status 1 with the reason (and the kept working directory) when a market did not come up, a
service stopped, or a job did not settle COMPLETED.

Heavy imports happen when the command runs: ``gpumarket --help`` stays quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["market"]


def _counts(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError:
        raise click.BadParameter("a comma-separated list of job counts, e.g. 10,100,1000") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("each job count must be >= 1")
    return tuple(sorted(set(counts)))


@click.command("market")
@click.option(
    "--jobs",
    "jobs",
    default="10,100,1000",
    show_default=True,
    callback=_counts,
    help="Concurrent job counts, comma-separated: one market and load per count.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench"),
    show_default=True,
    help="Where market.json and market.png go.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="The batched mode's --batch-size for the oracles (0: run the unbatched mode only).",
)
@click.option(
    "--batch-max-age",
    type=click.FloatRange(min=0.0),
    default=10.0,
    show_default=True,
    help="The batched mode's --batch-max-age for the oracles (below --fallback-delay).",
)
@click.option(
    "--job-seconds",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="How long every job runs on its agent.",
)
@click.option(
    "--gpus-per-provider",
    type=click.IntRange(min=1, max=1024),
    default=4,
    show_default=True,
    help="cpu-small GPUs each simulated provider registers (its hardware check proves 16 rounds per GPU).",
)
@click.option(
    "--floor-gops",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="cpu-small's floor per GPU on this market: the providers share this machine's cores.",
)
@click.option(
    "--prover-slots",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Challenges the simulated agents prove at once (one per core at most).",
)
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="The oracles' --heartbeat-interval (their default).",
)
@click.option(
    "--job-poll-interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="The oracles' --job-poll-interval (their default).",
)
@click.option(
    "--tick-interval",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="The oracles' --tick-interval, their hardware loop's period (their default).",
)
@click.option(
    "--job-workers",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="The oracles' --job-workers (their default).",
)
@click.option(
    "--silent-after",
    type=click.FloatRange(min=0.1),
    default=None,
    help="The oracles' --silent-after [default: 600 s, or 10 s per job when more]: every simulated provider's "
    "challenges queue at this machine's one prover, which is no agent's silence.",
)
@click.option(
    "--fallback-delay",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    help="The oracles' --fallback-delay (their default).",
)
@click.option(
    "--late-grace",
    type=click.FloatRange(min=0.0),
    default=5.0,
    show_default=True,
    help="Heartbeats: seconds beyond one status poll before one counts as late.",
)
@click.option(
    "--idle-seconds",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="Before each load: how long the oracles' idle CPU is measured.",
)
@click.option(
    "--settle-timeout",
    type=click.FloatRange(min=1.0),
    default=None,
    help="Seconds after the jobs' end before an unsettled job fails the run [default: from N].",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep every log and store here [default: a temporary directory, kept only on failure].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def market(
    jobs: tuple[int, ...],
    out_dir: Path,
    batch_size: int,
    batch_max_age: float,
    job_seconds: float,
    gpus_per_provider: int,
    floor_gops: int,
    prover_slots: int,
    heartbeat_interval: float,
    job_poll_interval: float,
    tick_interval: float,
    job_workers: int,
    silent_after: float | None,
    fallback_delay: float,
    late_grace: float,
    idle_seconds: float,
    settle_timeout: float | None,
    workdir: Path | None,
    as_json: bool,
) -> None:
    """The whole market on this machine at N concurrent jobs: oracle CPU and memory per job,
    settlement latency, gas per job with and without batching, late or missed heartbeats."""
    import sys

    from gpumarket.marketbench.harness import MarketBenchError, OracleTimings
    from gpumarket.marketbench.report import require_matplotlib
    from gpumarket.marketbench.run import BenchConfig, run_bench

    try:
        require_matplotlib()
    except MarketBenchError as error:
        raise click.ClickException(str(error)) from None
    config = BenchConfig(
        jobs=jobs,
        out_dir=out_dir,
        batch_size=batch_size,
        batch_max_age_s=batch_max_age,
        job_seconds=job_seconds,
        gpus_per_provider=gpus_per_provider,
        floor_gops=floor_gops,
        prover_slots=prover_slots,
        oracle=OracleTimings(
            heartbeat_interval_s=heartbeat_interval,
            job_poll_interval_s=job_poll_interval,
            tick_interval_s=tick_interval,
            workers=job_workers,
            silent_after_s=silent_after,
            fallback_delay_s=fallback_delay,
        ),
        late_grace_s=late_grace,
        idle_s=idle_seconds,
        settle_timeout_s=settle_timeout,
        workdir=workdir,
    )

    def echo(line: str) -> None:
        click.echo(line, file=sys.stderr if as_json else sys.stdout)

    try:
        report = run_bench(config, echo=echo)
    except (MarketBenchError, TimeoutError) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
