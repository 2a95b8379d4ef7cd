"""``gpumarket dashboard``: the market in a browser, read-only (gpumarket.dashboard.service).

    gpumarket dashboard --rpc http://127.0.0.1:8545 --deployment deployments/local.json \\
        --oracle http://127.0.0.1:8800 --oracle http://127.0.0.1:8801 --port 8900

The node and the deployment come from the flags or the config file (--config FILE or
$GPUMARKET_CONFIG: its ``rpc`` and ``deployment``; a ``key`` there is not used: the dashboard
signs nothing). It prints ``dashboard: <url>`` once it serves and runs until SIGINT or SIGTERM
(exit 0), or exits 1 when its chain follower gave up (the node stayed down too long).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gpumarket.chain.connection import EMBEDDED
from gpumarket.chain.errors import ChainError
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.config import ConfigError, resolve_settings
from gpumarket.dashboard.service import DEFAULT_PORT, Dashboard, DashboardConfig
from gpumarket.lifecycle import serve_until_signalled

__all__ = ["dashboard"]

F = TypeVar("F", bound=Callable[..., Any])


def _market_location(config: Path | None, rpc: str | None, deployment: Path | None) -> tuple[str, MarketDeployment]:
    """The node's URL and the deployment record, from the flags over the config file; a usage
    error (exit 2) says what is missing or wrong."""
    try:
        settings = resolve_settings(config, rpc=rpc, deployment=deployment)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    if not settings.rpc:
        raise click.UsageError("--rpc required (as an option or in the --config file)")
    if settings.rpc == EMBEDDED:
        raise click.BadParameter("the embedded chain lives inside one process: give a node's URL", param_hint="--rpc")
    if settings.deployment is None:
        raise click.UsageError("--deployment required (as an option or in the --config file)")
    try:
        return settings.rpc, MarketDeployment.read(settings.deployment)
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{settings.deployment}: {error}", param_hint="--deployment") from None


def _interval(flag: str, default: float, least: float, between: str) -> Callable[[F], F]:
    """A --<name>-interval option: seconds, at least ``least``."""
    return click.option(
        flag, type=click.FloatRange(min=least), default=default, show_default=True, help=f"Seconds between {between}."
    )


@click.command("dashboard")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (TOML or YAML: rpc, deployment) [default: $GPUMARKET_CONFIG].",
)
@click.option("--rpc", default=None, help="The node's URL (http(s)://...); overrides the config file.")
@click.option(
    "--deployment",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The market's deployment record (JSON); overrides the config file.",
)
@click.option("--oracle", "oracles", multiple=True, metavar="URL", help="A committee member's API, polled (repeat).")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to serve on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="0: an ephemeral port."
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The SQLite index, kept across restarts [default: a temporary file, indexed again at each start].",
)
@click.option(
    "--confirmations",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Blocks an event's block must be below the head before the pages show it.",
)
@_interval("--poll-interval", 1.0, 0.05, "the index's polls of the node")
@_interval("--oracle-interval", 5.0, 0.1, "polls of the oracles' /health and /metrics")
@_interval("--live-interval", 2.0, 0.2, "an open page's checks for news")
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Written with {"url", "pid", "address"} (the market\'s) once the dashboard serves.',
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True
)
def dashboard(
    config: Path | None,
    rpc: str | None,
    deployment: Path | None,
    oracles: tuple[str, ...],
    host: str,
    port: int,
    db_path: Path | None,
    confirmations: int,
    poll_interval: float,
    oracle_interval: float,
    live_interval: float,
    ready_file: Path | None,
    log_level: str,
) -> None:
    """Serve a read-only web dashboard of a market: its parameters, providers, jobs and oracles, live.

    Exits 0 when stopped by a signal, 1 when the chain follower gave up (node down too long)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node, record = _market_location(config, rpc, deployment)
    for url in oracles:
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{url!r} is not an http(s):// URL", param_hint="--oracle")
    settings = DashboardConfig(
        rpc=node,
        deployment=record,
        oracles=oracles,
        db_path=db_path,
        host=host,
        port=port,
        confirmations=confirmations,
        poll_interval_s=poll_interval,
        oracle_interval_s=oracle_interval,
        live_interval_s=live_interval,
    )
    try:
        service = Dashboard(settings).start()
    except OSError as error:  # the node unreachable (requests' errors are OSErrors), the port taken
        raise click.ClickException(f"node {node} or the address {host}:{port}: {error}") from None
    except (ChainError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"dashboard: {service.url}")
    serve_until_signalled(service, ready_file, "stopping the dashboard")
