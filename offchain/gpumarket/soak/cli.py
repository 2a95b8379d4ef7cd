"""``gpumarket soak``: the fault soak (gpumarket.soak.run), its report printed and written as JSON.

Progress goes to stdout (to stderr with --json, so stdout holds only the JSON report); the
soak's own log goes to <workdir>/soak.log beside every service's log. Exit status: 0 when no
honest provider was slashed or turned away, no payment is stuck, the books balance and the jobs
could run; 1 otherwise (gpumarket.soak.report); 2 when the soak could not start (a service or the
node did not).
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import click

from gpumarket.agentapi.errors import ClientError
from gpumarket.chain.errors import ChainError
from gpumarket.demo.launcher import LaunchError
from gpumarket.soak.market import SoakError
from gpumarket.soak.report import render
from gpumarket.soak.run import SoakConfig, run_soak

__all__ = ["soak"]

DEFAULT_OUT = Path("bench/soak.json")


def _stop_on_sigterm() -> None:
    """SIGTERM ends the soak like Ctrl-C does: through every `finally` (busy loops, services)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)


@click.command("soak")
@click.option("--jobs", type=click.IntRange(min=1), default=200, show_default=True, help="Jobs to run.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Jobs in flight at once (at most one per provider: 3).",
)
@click.option(
    "--busy",
    type=click.IntRange(min=0),
    default=None,
    help="Busy-loop processes saturating the CPUs [default: 2 x cores].",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault schedule [default: a random one, reported].")
@click.option(
    "--kill-interval-s",
    type=click.FloatRange(min=1.0),
    default=20.0,
    show_default=True,
    help="Mean wait between kills, from the last killed service serving again.",
)
@click.option(
    "--drain-timeout-s",
    type=click.FloatRange(min=1.0),
    default=None,
    help="After the last job is created, how long the rest may take [default: until they would count as stuck].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Where to write the JSON report.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A fresh directory for anvil's state, the services' stores and logs [default: a new temporary one, kept].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def soak(
    jobs: int,
    concurrency: int,
    busy: int | None,
    seed: int | None,
    kill_interval_s: float,
    drain_timeout_s: float | None,
    out: Path,
    workdir: Path | None,
    as_json: bool,
) -> None:
    """A fault soak on anvil: 3 oracles and 3 honest providers (each a process) run real jobs while
    busy loops saturate the CPUs, agents and oracles are killed and restarted at random (SIGINT,
    SIGTERM, SIGKILL), and the node is restarted once.

    Reports the outcomes, honest slashes, stuck payments, conservation, settle latency and every
    fault. Exits 1 if an honest provider was slashed or not verified, a payment is stuck, the books do
    not balance, or no provider could take the jobs."""
    root = workdir or Path(tempfile.mkdtemp(prefix="gpumarket-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    progress_out = sys.stderr if as_json else sys.stdout
    logging.basicConfig(
        filename=root / "soak.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    config_values = {"busy": busy} if busy is not None else {}
    config = SoakConfig(
        workdir=root,
        jobs=jobs,
        concurrency=concurrency,
        kill_interval_s=kill_interval_s,
        seed=secrets.randbelow(2**31) if seed is None else seed,
        drain_timeout_s=drain_timeout_s,
        **config_values,
    )
    _stop_on_sigterm()
    try:
        report = run_soak(config, echo=lambda line: click.echo(line, file=progress_out))
    except (SoakError, LaunchError, ChainError, ClientError, FileExistsError) as error:
        click.echo(f"soak could not run: {type(error).__name__}: {error}\nlogs: {root}", err=True)
        sys.exit(2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo("")
        click.echo(render(report))
    click.echo(f"report: {out}", err=as_json)
    sys.exit(0 if report.ok else 1)
