"""``gpumarket demo`` and ``gpumarket devnet``: the story of gpumarket.demo.story, told.

``gpumarket demo`` plays it in this process on the embedded chain; ``gpumarket devnet`` on
anvil with every oracle, provider and the client in a process of its own. Both print progress
while it runs (on stderr with --json, so stdout holds only the JSON object) and end with the
summary; the exit status is 0 only when everything went as the protocol says.

The services' logs go to files in the working directory (a fresh temporary one unless
--workdir is given), which is removed after a clean run unless --keep, and kept, and named,
after a failed one.

``gpumarket demo-client`` (hidden) is devnet's client process: it reads a ClientPlan (JSON),
plays gpumarket.demo.client.run_client and writes the reports (JSON).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click

from gpumarket.chain.connection import connect
from gpumarket.chain.keys import load_key
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.client.jobs import JobClient
from gpumarket.cluster import LocalRayCluster
from gpumarket.containers.local_image import ImageBuildError, ensure_python_image
from gpumarket.demo.client import ClientPlan, run_client, write_reports
from gpumarket.demo.launcher import PROCESS_RUNTIME, Launcher, ServiceTiming
from gpumarket.demo.story import DemoError, StoryParams, run_story
from gpumarket.demo.summary import render
from gpumarket.provider.runtime import JOBS_IN, RUNTIMES, RaySettings, RuntimeSettings

__all__ = ["demo", "demo_client", "devnet"]

_STORY = StoryParams()  # the story as told by default


@contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """Every log record of this process into `path` (INFO and above) while the story runs."""
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()


def tell(
    make_launcher: Callable[[Path, ServiceTiming, RuntimeSettings], Launcher],
    *,
    as_json: bool,
    workdir: Path | None,
    keep: bool,
    params: StoryParams = _STORY,
    runtime: RuntimeSettings = PROCESS_RUNTIME,
) -> int:
    """Play the story with the launcher `make_launcher` builds; print the summary; the exit status.

    With the container runtime the jobs run in the local Python image (built first when missing,
    gpumarket.containers.local_image), unless ``params`` names an image already."""
    root = workdir or Path(tempfile.mkdtemp(prefix="gpumarket-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    progress_out = sys.stderr if as_json else sys.stdout

    def echo(line: str) -> None:
        click.echo(line, file=progress_out)

    if runtime.runs_containers and params.image is None:
        conf = {} if runtime.containers_conf is None else {"CONTAINERS_CONF": str(runtime.containers_conf)}
        echo("jobs run in containers: finding (or building, about 20 s) the local Python image")
        try:
            params = replace(params, image=ensure_python_image(conf))
        except ImageBuildError as error:
            click.echo(f"demo failed: {error}", err=True)
            return 1
        echo(f"jobs' image: {params.image}")
    launcher = make_launcher(root, ServiceTiming(), runtime)
    try:
        with _logs_to(root / "demo.log"), launcher:
            result = run_story(launcher, params, echo=echo)
    except DemoError as error:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(error), "workdir": str(root)}))
        click.echo(f"demo failed: {error}\nlogs: {root}", err=True)
        return 1
    if as_json:
        click.echo(json.dumps({**result.to_json(), "workdir": str(root) if keep or not result.ok else None}))
    else:
        click.echo("")
        click.echo(render(result, description=launcher.description))
    if not result.ok:
        click.echo(f"the demo deviated from the protocol; logs: {root}", err=True)
        return 1
    if not keep and workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
_workdir_option = click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the services keep their files and logs [default: a temporary directory].",
)
_keep_option = click.option("--keep", is_flag=True, help="Keep the temporary working directory after a clean run.")
_runtime_option = click.option(
    "--runtime",
    "runtime_kind",
    type=click.Choice(RUNTIMES),
    default="process",
    show_default=True,
    help="How the providers run jobs: host processes, Podman containers of a local Python image, or "
    "(devnet only) a local multi-node Ray cluster that devnet starts and stops.",
)
_containers_conf_option = click.option(
    "--containers-conf",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A containers.conf for podman [default: $CONTAINERS_CONF, else podman's own].",
)


@contextlib.contextmanager
def _runtime(kind: str, containers_conf: Path | None, ray_jobs_in: str = "process") -> Iterator[RuntimeSettings]:
    """The providers' runtime settings; for the ray runtime, with a local Ray cluster of two
    worker nodes of two GPUs each, up for as long as the story runs, whose nodes run the jobs as
    ``ray_jobs_in`` says."""
    if kind != "ray":
        yield RuntimeSettings(kind=kind, containers_conf=containers_conf)
        return
    click.echo("jobs run on a local Ray cluster: starting it (two worker nodes, two GPUs each)", err=True)
    with LocalRayCluster(workers=2, gpus_per_worker=2) as cluster:
        yield RuntimeSettings(
            kind="ray",
            containers_conf=containers_conf,
            ray=RaySettings(
                cluster.address, cluster.dashboard_url, node_ip_address=cluster.driver_address, jobs_in=ray_jobs_in
            ),
        )


@click.command("demo")
@_json_option
@_workdir_option
@_keep_option
@_runtime_option
@_containers_conf_option
def demo(as_json: bool, workdir: Path | None, keep: bool, runtime_kind: str, containers_conf: Path | None) -> None:
    """The whole market on an embedded chain: 3 oracles (2-of-3), 3 providers (one lazy), real jobs.

    Exits 1 when anything did not go as the protocol says."""
    from gpumarket.demo.inprocess import InProcessLauncher

    if runtime_kind == "ray":
        raise click.UsageError(
            "the ray runtime needs a provider process per agent: run `gpumarket devnet --runtime ray`"
        )
    with _runtime(runtime_kind, containers_conf) as runtime:
        code = tell(InProcessLauncher, as_json=as_json, workdir=workdir, keep=keep, runtime=runtime)
    sys.exit(code)


@click.command("devnet")
@_json_option
@_workdir_option
@_keep_option
@_runtime_option
@_containers_conf_option
@click.option(
    "--ray-jobs-in",
    type=click.Choice(JOBS_IN),
    default="process",
    show_default=True,
    help="How the local cluster's nodes run the jobs (--runtime ray). Containers are what a provider's "
    "cluster runs by default; on two cores, a cluster, nine services and three containers at once may "
    "leave the jobs too little CPU to end within their limits.",
)
def devnet(
    as_json: bool, workdir: Path | None, keep: bool, runtime_kind: str, containers_conf: Path | None, ray_jobs_in: str
) -> None:
    """The demo's story on anvil, each oracle, provider and the client in its own process.

    anvil comes from the npm registry (`make anvil`); podman for --runtime container from
    Debian's packages (`make containers`); Ray for --runtime ray from the ray extra. Exits 1 when
    anything did not go as the protocol says."""
    from gpumarket.demo.devnet import ProcessLauncher

    if ray_jobs_in != "process" and runtime_kind != "ray":
        raise click.UsageError("--ray-jobs-in is for --runtime ray")
    with _runtime(runtime_kind, containers_conf, ray_jobs_in) as runtime:
        code = tell(ProcessLauncher, as_json=as_json, workdir=workdir, keep=keep, runtime=runtime)
    sys.exit(code)


@click.command("demo-client", hidden=True)
@click.option("--rpc", required=True)
@click.option(
    "--deployment", "deployment_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True
)
@click.option("--key", "key_spec", required=True)
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
def demo_client(rpc: str, deployment_path: Path, key_spec: str, plan_path: Path, report_path: Path) -> None:
    """devnet's client: play a ClientPlan, write the reports."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    w3 = connect(rpc)
    deployment = MarketDeployment.read(deployment_path)
    key = load_key(key_spec, w3=w3)
    plan = ClientPlan.from_json(json.loads(plan_path.read_text()))
    client = JobClient(
        deployment.market_at(w3, signer=key), key, poll_interval_s=plan.poll_interval_s, from_block=deployment.block
    )
    reports = run_client(client, plan, echo=lambda line: click.echo(line))
    write_reports(report_path, reports)
