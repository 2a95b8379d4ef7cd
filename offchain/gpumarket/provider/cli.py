"""``gpumarket provider``: the provider agent's commands.

``gpumarket provider run`` is the provider as it works on a market: it connects to the node,
checks the provider's standing on chain, serves the API and watches the chain for jobs to take
(gpumarket.provider.service).

``gpumarket provider serve-api`` runs the agent's HTTP API for a local run: challenges, job
specs, job runs and results, with its state in SQLite (a restart follows the jobs that still
run and reports the others lost). Without a chain, the jobs' on-chain facts come from a JSON
file (``--jobs-file``, see ``JsonFileJobSource``); watching the chain is ``provider run``'s job.

``gpumarket provider register|update|stake|unstake|withdraw|status|claim`` are the provider's
actions on the market, each checked before it is sent; they live in gpumarket.actions.cli
(one implementation with the ape scripts') and are added to this group here.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from gpumarket.actions.cli import PROVIDER_COMMANDS, connection_options, group_chain_options, service_settings
from gpumarket.chain.connection import connect, is_local_chain
from gpumarket.chain.errors import ChainError
from gpumarket.chain.keys import KeyLoadError, load_key
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.containers.registry import registry_map
from gpumarket.lifecycle import serve_until_signalled, stop_on_signals, write_ready_file
from gpumarket.measure.classes import GPU_CLASSES, class_by_name
from gpumarket.measure.provers import BACKENDS, ProverError, TileProver, make_prover
from gpumarket.measure.provers.cheats import LateSkippingProver
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.jobdir import RunnerConfig
from gpumarket.provider.jobsource import JsonFileJobSource, OnChainJob
from gpumarket.provider.runtime import JOBS_IN, RUNTIMES, RaySettings, RuntimeSettings, RuntimeUnavailable, make_runtime
from gpumarket.provider.service import ProviderService, ServiceConfig, StartupError, cluster_offer, metered_gpus
from gpumarket.provider.store import Store
from gpumarket.provider.watcher import WatchPolicy

__all__ = ["provider"]

log = logging.getLogger(__name__)


class _NoJobs:
    """The job source without --jobs-file: no job exists, so every job request gets a 404."""

    def get_job(self, job_id: int) -> OnChainJob | None:
        return None


def _gpu_list(value: str) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of GPU indices") from None


def runtime_options(command: Callable[..., None]) -> Callable[..., None]:
    """The job runtime's options, the same for `serve-api` and `run`; they reach the command as
    one ``runtime`` argument (a RuntimeSettings)."""
    options = [
        click.option(
            "--runtime",
            "runtime_kind",
            type=click.Choice(RUNTIMES),
            default="container",
            show_default=True,
            help="How jobs run: in Podman containers (spec version 2), as host processes (spec "
            "version 1; development only: no isolation, so it must be named), or on a Ray cluster "
            "(--ray-address, --ray-dashboard; its nodes run jobs as --ray-jobs-in says).",
        ),
        click.option(
            "--ray-address",
            default=None,
            metavar="HOST:PORT",
            help="The Ray cluster's GCS address (--runtime ray): the agent joins it to read its GPUs and prove them.",
        ),
        click.option(
            "--ray-dashboard",
            default=None,
            metavar="URL",
            help="The Ray cluster's job API, e.g. http://head:8265 (--runtime ray).",
        ),
        click.option(
            "--ray-node-ip",
            default=None,
            help="This machine's address in the Ray cluster [default: Ray's guess] (--runtime ray).",
        ),
        click.option(
            "--ray-python",
            default=None,
            help="The Python on the cluster's nodes that has gpumarket installed [default: this agent's].",
        ),
        click.option(
            "--ray-jobs-in",
            type=click.Choice(JOBS_IN),
            default=None,
            help="How the cluster's nodes run jobs (--runtime ray): in Podman containers, with the container "
            "options below (spec version 2) [default], or as processes (spec version 1; development only).",
        ),
        click.option(
            "--containers-conf",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="A containers.conf for podman (CONTAINERS_CONF) [default: podman's own].",
        ),
        click.option(
            "--network",
            "networks",
            multiple=True,
            help="A podman network jobs may name in their spec besides 'none' (repeat for more).",
        ),
        click.option(
            "--max-image-bytes",
            type=click.IntRange(min=1),
            default=RuntimeSettings.max_image_bytes,
            show_default=True,
            help="The largest image the agent pulls for a job, as its registry's manifest declares it "
            "(config and layers: the size the oracles check an image_too_large claim against).",
        ),
        click.option(
            "--registry",
            "registries",
            multiple=True,
            metavar="HOST=URL",
            help="Where a registry is served when not at https://HOST, e.g. "
            "10.0.0.5:5000=http://10.0.0.5:5000 (repeat; the config file's [registries] too): "
            "the agent sizes images there before pulling.",
        ),
    ]

    @functools.wraps(command)
    def with_runtime(
        *args: Any,
        runtime_kind: str,
        ray_address: str | None,
        ray_dashboard: str | None,
        ray_node_ip: str | None,
        ray_python: str | None,
        ray_jobs_in: str | None,
        containers_conf: Path | None,
        networks: tuple[str, ...],
        max_image_bytes: int,
        registries: tuple[str, ...],
        **kwargs: Any,
    ) -> None:
        try:
            registries_by_host = registry_map(registries)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--registry") from None
        cluster = None
        if runtime_kind == "ray":
            if not ray_address or not ray_dashboard:
                raise click.UsageError("--runtime ray needs the cluster's --ray-address and --ray-dashboard")
            cluster = RaySettings(ray_address, ray_dashboard.rstrip("/"), node_ip_address=ray_node_ip)
            if ray_python:
                cluster = replace(cluster, python=ray_python)
            if ray_jobs_in:
                cluster = replace(cluster, jobs_in=ray_jobs_in)
        elif ray_address or ray_dashboard or ray_node_ip or ray_python or ray_jobs_in:
            raise click.UsageError("the --ray-* options are for --runtime ray")
        try:
            runtime = RuntimeSettings(
                kind=runtime_kind,
                ray=cluster,
                containers_conf=containers_conf,
                networks=networks,
                max_image_bytes=max_image_bytes,
                registries=registries_by_host,
            )
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        if runtime.kind == "process" or (runtime.ray is not None and runtime.ray.jobs_in == "process"):
            log.warning(
                "the process runtime runs clients' jobs as host processes of this user, without "
                "isolation: for development only"
            )
        command(*args, runtime=runtime, **kwargs)

    for option in reversed(options):
        with_runtime = option(with_runtime)
    return with_runtime


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@group_chain_options
def provider() -> None:
    """The provider: its agent (run, serve-api) and its actions on the market (register, update,
    stake, unstake, withdraw, status, claim).

    --config, --rpc, --deployment and --key go before or after the subcommand."""


# The provider's actions on the market (gpumarket.actions.cli): register .. claim.
for _command in PROVIDER_COMMANDS:
    provider.add_command(_command)


@provider.command("serve-api")
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="SQLite state file."
)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Jobs' directories.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True, help="0: an ephemeral port.")
@click.option("--address", required=True, help="This provider's account address (jobs must name it).")
@click.option("--chain-id", type=click.IntRange(min=1), required=True)
@click.option("--market", required=True, help="The GpuMarket deployment's address.")
@click.option(
    "--jobs-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON job table standing in for the chain (re-read at every lookup).",
)
@click.option(
    "--gpu-class", "class_name", type=click.Choice([c.name for c in GPU_CLASSES]), default="cpu-dev", show_default=True
)
@click.option("--gpus", default="", help="GPU indices to assign to jobs, e.g. 0,1 [default: none, a CPU machine].")
@click.option(
    "--backend",
    type=click.Choice(["auto", *BACKENDS]),
    default="auto",
    show_default=True,
    help="Challenge prover: auto is torch when it sees a CUDA GPU, numpy otherwise.",
)
@click.option(
    "--meter-interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between metering samples.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Written with {"url": ...} once the API listens (for scripts that start the agent).',
)
@runtime_options
def serve_api(
    db_path: Path,
    workdir: Path,
    host: str,
    port: int,
    address: str,
    chain_id: int,
    market: str,
    jobs_file: Path | None,
    class_name: str,
    gpus: str,
    backend: str,
    meter_interval: float,
    ready_file: Path | None,
    runtime: RuntimeSettings,
) -> None:
    """Run the agent's HTTP API until SIGTERM or SIGINT (running jobs keep running)."""
    _log_to_stderr()
    gpu_indices = _gpu_list(gpus)
    on_cluster = runtime.kind == "ray"
    meter_gpus = metered_gpus(gpu_indices, on_cluster=on_cluster)
    try:
        runner = make_runtime(
            runtime, RunnerConfig(root=workdir, meter_interval_s=meter_interval, meter_gpus=meter_gpus), address
        )
        # On a cluster: its GPUs, and the challenge on every one of them (as `provider run`).
        gpu_indices, prover = cluster_offer(gpu_indices, backend) if on_cluster else (gpu_indices, make_prover(backend))
        config = AgentConfig(
            address=address, chain_id=chain_id, market=market, gpu_class=class_by_name(class_name), gpus=gpu_indices
        )
    except (ValueError, ProverError, RuntimeUnavailable) as error:
        raise click.ClickException(str(error)) from None
    store = Store(db_path)
    agent = ProviderAgent(config, store, runner, JsonFileJobSource(jobs_file) if jobs_file else _NoJobs(), prover)
    recovery = agent.recover()
    log.info("%s", recovery.summary())
    server = ProviderServer(agent, host, port)

    # server.stop waits for the server's thread: not from the signal handler, on a thread of its own.
    stop_on_signals(
        lambda: threading.Thread(target=server.stop, daemon=True).start(), "stopping the API (jobs keep running)"
    )
    if ready_file is not None:
        write_ready_file(ready_file, {"url": server.url, "pid": os.getpid()})
    try:
        server.serve_forever()
    finally:
        # The store stays open: threads that follow still-running jobs may record an ending until
        # the process exits, and every transaction is already durable on its own.
        agent.close()


@provider.command("run")
@connection_options()
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="SQLite state file."
)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Jobs' directories.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True, help="0: an ephemeral port.")
@click.option("--public-url", default=None, help="The endpoint others reach [default: the bound address].")
@click.option("--gpus", default="", help="GPU indices to assign to jobs, e.g. 0,1 [default: none, a CPU machine].")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True)
@click.option("--confirmations", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True)
@click.option("--meter-interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
@click.option(
    "--max-gpus",
    type=click.IntRange(min=1),
    default=None,
    help="GPUs all running jobs may use together (at most the registered count).",
)
@click.option("--min-job-value", type=click.IntRange(min=0), default=0, help="Least price * GPUs * duration to take.")
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Written with {"url", "pid", "address"} once the service is up.',
)
# A cheating prover for the devnet's lazy provider (gpumarket devnet): hidden, local chains only.
@click.option(
    "--cheat-skip-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    hidden=True,
    help="Cheat (local chains only): skip this fraction of each challenge's tiles.",
)
@click.option(
    "--cheat-skip-after",
    type=click.IntRange(min=0),
    default=None,
    hidden=True,
    help="Cheat (local chains only): answer this many challenges honestly first [default: 0].",
)
@runtime_options
def run(
    config: Path | None,
    rpc: str | None,
    deployment: Path | None,
    key: str | None,
    db_path: Path,
    workdir: Path,
    host: str,
    port: int,
    public_url: str | None,
    gpus: str,
    backend: str,
    confirmations: int,
    poll_interval: float,
    meter_interval: float,
    max_gpus: int | None,
    min_job_value: int,
    ready_file: Path | None,
    cheat_skip_fraction: float | None,
    cheat_skip_after: int | None,
    runtime: RuntimeSettings,
) -> None:
    """Run the provider on a market until SIGTERM or SIGINT (running jobs keep running).

    Exits 0 when stopped by a signal, 1 when the chain watcher gave up (node down too long)."""
    _log_to_stderr()
    settings = service_settings(config, rpc, deployment, key)  # the flags before `run` too: its own win
    node = str(settings.rpc)
    runtime = replace(runtime, registries={**settings.registries, **runtime.registries})  # the options win
    if cheat_skip_after is not None and cheat_skip_fraction is None:
        raise click.UsageError("--cheat-skip-after needs --cheat-skip-fraction")
    try:
        w3 = connect(node)
        prover: TileProver | None = None
        if cheat_skip_fraction is not None:
            if not is_local_chain(w3):
                raise click.UsageError(f"the cheat options are for local chains only, not chain id {w3.eth.chain_id}")
            prover = LateSkippingProver(1.0 - cheat_skip_fraction, honest_challenges=cheat_skip_after or 0)
            log.warning(
                "cheating: %d honest challenge(s), then skipping %.0f%% of each challenge's tiles",
                prover.honest_challenges,
                100 * cheat_skip_fraction,
            )
        service_config = ServiceConfig(
            rpc=node,
            deployment=MarketDeployment.read(Path(str(settings.deployment))),
            key=load_key(str(settings.key), w3=w3),
            db_path=db_path,
            workdir=workdir,
            host=host,
            port=port,
            public_url=public_url,
            gpus=_gpu_list(gpus),
            backend=backend,
            confirmations=confirmations,
            poll_interval=poll_interval,
            meter_interval=meter_interval,
            policy=WatchPolicy(max_gpus=max_gpus, min_job_value=min_job_value),
            runtime=runtime,
        )
        service = ProviderService(service_config, w3=w3, prover=prover).start()
    except OSError as error:  # requests' connection errors too
        raise click.ClickException(f"node {node} or a local file: {error}") from None
    except (KeyLoadError, StartupError, ChainError, ProverError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    serve_until_signalled(service, ready_file, "stopping (jobs keep running)")
