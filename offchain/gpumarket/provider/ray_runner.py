"""The cluster runtime: runs each job on the provider's Ray cluster, where Ray places it.

The agent does not schedule: it submits each job to the cluster's job API (Ray's job
submission, on the dashboard's HTTP address) and Ray finds a node with the job's GPUs free::

    submission id   gpumarket-<owner hash>-job-<id>   (one agent's jobs, found again after a restart)
    entrypoint      <python> -m gpumarket.provider.ray_node --root <jobs folder> --job <id> --deadline <t>
    resources       entrypoint_num_gpus = the job's GPUs (Ray sets CUDA_VISIBLE_DEVICES on the node)
    spec            GPUMARKET_JOB_SPEC in the job's runtime_env (base64 of its canonical JSON)

On the node, ray_node.py runs the job with the single machine's runtime: in a container under the
node's podman (``jobs_in="container"``, the default: version 2 specs, the agent's container
settings), or, named explicitly for development, as a process (``jobs_in="process"``: version 1
specs). Its directory, limits, meter and ending are the single machine's. A container job's image
is got before submission (``prepare``): every node that could place the job now pulls it, so the
job starts at once wherever Ray puts it, and an image that cannot be had ends the job before it
started, with the image reason the oracles check (gpumarket.oracle.images), as on one machine.

**The jobs folder is shared storage**: the same path on the agent's machine and on every node
(NFS or any shared filesystem), so the job's outputs, its stdout and stderr, its usage record and
its result bundle are in the agent's jobs folder whichever node ran it, and nothing is copied back.
The agent checks at start that the nodes see the folder (``check_shared_folder``) and refuses to
run otherwise.

Following a job is reading the Ray job's status (``poll_s``): PENDING while it waits to be
placed (past ``start_timeout_s`` it is stopped and lost), RUNNING, then SUCCEEDED when the node
wrote the job's ending, or FAILED/STOPPED. A job whose Ray job ended without an ending written
(its node died, Ray could not start it, or the node could not: ``job-<id>.not-started``, e.g. an
image a node that joined since could not pull) is ``ProcessGone``: the agent records it lost and the
oracles decide FAILED, as for a machine that goes down under a job (docs/ARCHITECTURE.md).

Stopping writes ``stop_request`` in the job's directory (the node stops the job's group and writes
its ending), and stops the Ray job itself if that has not ended ``stop_grace_s`` later (a node that
no longer answers) or if it never started. The wall-time limit is enforced on the node, counted
to the deadline the agent set at submission; the agent stops a job still running past it.

After a restart, a job is found by its submission id: still running, it is followed again
(``adopt``); ended meanwhile, it is recorded from its files (``finalize``). Ray knows no pids: a
job's ``pid`` and ``start_ticks`` are 0, and its start is the Ray job's.

Capacity: a job's GPUs are on one node (its entrypoint's; a job may drive Ray itself for more,
but what it is sold is one node's GPUs). ``capacity_refusal`` compares them with the most GPUs
one node has free now (gpumarket.cluster.cluster_info, whatever else runs there), so a spec the
cluster cannot place is refused with 503 and the client tries again, rather than waiting in
Ray's queue on paid time.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpumarket.agentapi.spec import AnyJobSpec, ContainerJobSpec, JobSpec
from gpumarket.cluster import ClusterError, cluster_info, connect, node_address
from gpumarket.containers.engine import ImageUnavailable
from gpumarket.provider.container_runner import container_refusal, offered_networks
from gpumarket.provider.jobdir import (
    JobPaths,
    ProcessGone,
    RunnerConfig,
    RunResult,
    StopReason,
    conclude,
    read_exit_status,
    read_stop_reason,
    start_limit,
    write_atomic,
)
from gpumarket.provider.ray_files import (
    NODE_CONTAINERS_ENV,
    SPEC_ENV,
    never_placed_file,
    not_started_file,
    placement_file,
    stop_request_file,
)

__all__ = ["RayJob", "RayRunner", "RaySettings", "check_shared_folder", "submission_prefix"]

log = logging.getLogger(__name__)

_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
JOBS_IN = ("container", "process")
NODE_START_S = 30.0  # time allowed for a node's ray_node process to start (Python and its imports)


@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is and how jobs are run there.

    ``address``: the cluster's GCS (host:port; the agent joins as a driver to read its GPUs and run
    challenges); ``dashboard_url``: its job API (http://host:8265); ``python``: the interpreter on
    the nodes that has gpumarket installed (default: the agent's own, right when the nodes share
    its install); ``start_timeout_s``: how long a submitted job may wait to be placed;
    ``stop_grace_s``: how long a stop requested through the shared folder may take before the
    Ray job itself is stopped; ``submit_retry_s``: how long a submission the job API answers with
    a 5xx is tried again; ``status_interval_s``: how often a running job's Ray status is read (an
    HTTP call to the head: the node itself enforces the job's limits every ``poll_s``);
    ``node_ip_address``: this machine's address in the cluster (default: Ray's guess);
    ``jobs_in``: how the nodes run jobs, "container" (podman on every node, version 2 specs) or
    "process" (development only, version 1 specs)."""

    address: str
    dashboard_url: str
    python: str = sys.executable
    node_ip_address: str | None = None
    start_timeout_s: float = 120.0
    stop_grace_s: float = 15.0
    submit_retry_s: float = 60.0
    status_interval_s: float = 0.5
    jobs_in: str = "container"

    def __post_init__(self) -> None:
        if self.jobs_in not in JOBS_IN:
            raise ValueError(f"jobs_in {self.jobs_in!r}: expected one of {', '.join(JOBS_IN)}")


def submission_prefix(owner: str) -> str:
    return f"gpumarket-{owner}-job-"


def check_shared_folder(root: Path, *, timeout_s: float = 60.0) -> None:
    """ClusterError unless every alive node with GPUs sees ``root`` (the jobs folder) as this
    machine does: a marker written here is read there by a task pinned to each node."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".shared-check-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    marker.write_text(token)

    def read_marker(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError as error:
            return f"unreadable: {error}"

    try:
        nodes = [node for node in cluster_info().nodes if node["gpus"] > 0]
        if not nodes:
            raise ClusterError("the cluster has no node with GPUs")
        seen = _on_each_node(nodes, read_marker, str(marker), timeout_s=timeout_s)
        blind = [name for name, text in seen.items() if text != token]
        if blind:
            raise ClusterError(
                f"the jobs folder {root} is not shared with node(s) {', '.join(blind)}: mount it at the same"
                " path on every node (see docs/provider.md, cluster providers)"
            )
    finally:
        marker.unlink(missing_ok=True)


def _on_each_node(nodes: Sequence[dict[str, Any]], function: Any, *args: Any, timeout_s: float) -> dict[str, Any]:
    """``function(*args)`` run on each of ``nodes`` (cluster_info's), by a task pinned there that
    holds no resources; its answers by "address (node id)". ClusterError past ``timeout_s``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(function)
    pending = {
        node["address"] + " (" + node["node_id"][:8] + ")": task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["node_id"], soft=False)
        ).remote(*args)
        for node in nodes
    }
    try:
        return dict(zip(pending, ray.get(list(pending.values()), timeout=timeout_s), strict=True))
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"the cluster's nodes did not answer within {timeout_s:.0f} s") from None


def _pull_on_node(command: list[str], environment: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """On a node: ray_node's --pull-image, its answer as JSON (or why there is none)."""
    import os
    import subprocess

    try:
        done = subprocess.run(
            command, env={**os.environ, **environment}, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"code": "image_unavailable", "detail": f"the pull took more than {timeout_s:.0f} s"}
    except OSError as error:
        return {"code": "image_unavailable", "detail": f"could not run {command[0]}: {error}"}
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"code": "image_unavailable", "detail": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    return answer if isinstance(answer, dict) else {"code": "image_unavailable", "detail": str(answer)[:500]}


class RayJob:
    """A job submitted to the cluster (or found there after a restart); ``wait`` follows it."""

    def __init__(
        self,
        runner: RayRunner,
        job_id: int,
        spec: AnyJobSpec,
        gpus: tuple[int, ...],
        started_at: float,
        deadline: float,
        *,
        resumed: bool,
    ) -> None:
        self.runner = runner
        self.job_id = job_id
        self.spec = spec
        self.gpus = gpus
        self.pid = 0
        self.start_ticks = 0
        self.started_at = started_at
        self.deadline = deadline
        self.paths = runner.paths(job_id)
        self._resumed = resumed
        self._stop_reason: StopReason | None = None
        self._stop_asked_at: float | None = None
        self._lock = threading.Lock()

    @property
    def resumed(self) -> bool:
        return self._resumed

    def stop(self, reason: StopReason = "stopped") -> None:
        """Asks the node to stop the job (it writes the ending); the Ray job itself is stopped
        when the job never started or the node does not end it within the grace period."""
        with self._lock:
            if self._stop_reason is not None:
                return
            self._stop_reason = reason
            self._stop_asked_at = time.monotonic()
        log.info("job %d: stopping (%s)", self.job_id, reason)
        if self.paths.root.is_dir():
            write_atomic(stop_request_file(self.paths), reason.encode())
        else:
            self.runner.stop_submission(self.job_id)

    def _overdue(self, status: str, submitted_for_s: float) -> str | None:
        """Why the agent must step in now, or None: a job never placed, or one still running
        past its deadline (plus the node's grace), or a stop the node did not carry out."""
        now = time.time()
        if status == "PENDING" and submitted_for_s > self.runner.settings.start_timeout_s:
            return f"not placed by the cluster within {self.runner.settings.start_timeout_s:.0f} s"
        grace = self.runner.config.kill_grace_s + self.runner.settings.stop_grace_s
        if now > self.deadline + grace:
            return "still running past its wall-time limit"
        asked = self._stop_asked_at
        if asked is not None and time.monotonic() - asked > self.runner.settings.stop_grace_s:
            return "the node did not carry out the stop"
        return None

    def wait(self) -> RunResult:
        """Follows the Ray job to its end; then the job's files as the node wrote them are its
        result. ProcessGone when the Ray job ended without them (its node died)."""
        begun = time.monotonic()
        stepped_in = False
        while True:
            details = self.runner.details(self.job_id)
            status = "FAILED" if details is None else str(details.status.value)
            if status in _TERMINAL:
                break
            why = None if stepped_in else self._overdue(status, time.monotonic() - begun)
            if why is not None:
                log.warning("job %d: %s; stopping its Ray job", self.job_id, why)
                if status == "PENDING":
                    write_atomic(never_placed_file(self.runner.config.root, self.job_id), why.encode())
                self.runner.stop_submission(self.job_id)
                stepped_in = True
            time.sleep(self.runner.settings.status_interval_s)
        return self.runner.concluded(self.job_id, self.spec, self.started_at, details, resumed=self.resumed)


class RayRunner:
    """The cluster runtime (gpumarket.provider.runtime.JobRuntime); see the module docstring."""

    name = "ray"

    def __init__(
        self, config: RunnerConfig, settings: RaySettings, owner: str, *, node_containers: dict[str, Any] | None = None
    ) -> None:
        """``node_containers``: how the nodes run containers (runtime.node_containers), needed
        exactly when ``settings.jobs_in`` is "container"."""
        if (settings.jobs_in == "container") != (node_containers is not None):
            raise ValueError('the nodes\' container settings are needed exactly when jobs_in is "container"')
        self.config = config
        self.settings = settings
        self.owner = owner
        self.node_containers = node_containers
        # Getting an image (on the nodes) may take long: the agent then does it off the request thread.
        self.pulls_images = node_containers is not None
        self._nodes: dict[int, dict[str, Any]] = {}  # job id -> the node Ray placed it on
        Path(config.root).mkdir(parents=True, exist_ok=True)
        connect(settings.address, node_ip_address=settings.node_ip_address)  # RayMissing without the extra
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(settings.dashboard_url)

    # ------------------------------------------------------------------ naming

    def paths(self, job_id: int) -> JobPaths:
        return JobPaths.of(self.config.root, job_id)

    def submission_id(self, job_id: int) -> str:
        return f"{submission_prefix(self.owner)}{job_id}"

    # ------------------------------------------------------------------ offer and refusals

    def offer(self) -> dict[str, Any]:
        try:
            info = cluster_info()
        except Exception as error:  # /health must answer even when the cluster does not
            return {"runtime": self.name, "cluster": {"error": f"{type(error).__name__}: {error}"}}
        offer: dict[str, Any] = {
            "runtime": self.name,
            "cluster": {"total_gpus": info.total_gpus, "free_gpus": info.free_gpus, "nodes": len(info.nodes)},
        }
        if self.node_containers is not None:  # what a container job may ask, as on one machine
            offer["networks"] = list(self._networks)
            offer["max_image_bytes"] = self.node_containers["max_image_bytes"]
        return offer

    @property
    def _networks(self) -> tuple[str, ...]:
        return offered_networks(self.node_containers["networks"] if self.node_containers else ())

    def refusal(self, spec: AnyJobSpec) -> str | None:
        if self.node_containers is not None:
            return container_refusal(spec, self._networks)
        if not isinstance(spec, JobSpec):
            return (
                f"this agent runs jobs on its Ray cluster as processes in a working directory (version 1"
                f" specs, for development); a version {spec.version} spec (a container) needs an agent whose"
                " cluster runs containers"
            )
        return None

    def capacity_refusal(self, gpu_count: int) -> str | None:
        """Why the cluster cannot place a job of ``gpu_count`` GPUs now, or None."""
        try:
            free = cluster_info().most_free_on_one_node
        except Exception as error:
            return f"the cluster did not answer: {type(error).__name__}: {error}"
        if free < gpu_count:
            return f"the cluster's nodes have at most {free} GPUs free on one node now, the job needs {gpu_count}"
        return None

    def prepare(self, job_id: int, spec: AnyJobSpec, *, timeout_s: float | None = None) -> None:
        """For a container job: every node that could place it now (its GPUs free there, or
        every node with GPUs when none could) gets its image, each as one machine would
        (ray_node --pull-image: sized on its registry, then pulled, within ``pull_timeout_s``
        and ``timeout_s``). ImageUnavailable with the first node's reason when one cannot.
        A process job has nothing to get."""
        if self.node_containers is None:
            return
        if not isinstance(spec, ContainerJobSpec):
            raise TypeError(f"job {job_id}: {self.refusal(spec)}")
        limit_s = float(self.node_containers["pull_timeout_s"])
        limit_s = limit_s if timeout_s is None else min(timeout_s, limit_s)
        try:
            with_gpus = [node for node in cluster_info().nodes if node["gpus"] > 0]
            able = [node for node in with_gpus if node["free_gpus"] >= spec.gpu_count] or with_gpus
            command = [*self._node_command(job_id), "--pull-image", repr(limit_s)]
            # The pull is bounded by limit_s on the node; starting the node's Python comes on top.
            bound_s = limit_s + NODE_START_S
            answers = _on_each_node(
                able, _pull_on_node, command, self._job_environment(spec), bound_s, timeout_s=bound_s + 10
            )
        except ClusterError as error:
            raise ImageUnavailable("image_unavailable", f"the cluster could not get {spec.image}: {error}") from None
        for node, answer in answers.items():
            if not answer.get("ok"):
                code = answer.get("code")
                raise ImageUnavailable(
                    code if code in ("image_not_found", "image_too_large") else "image_unavailable",
                    f"node {node}: {answer.get('detail', answer)}",
                )
        log.info("job %d: %s is on %d node(s)", job_id, spec.image, len(answers))

    def _node_command(self, job_id: int) -> list[str]:
        return [
            self.settings.python,
            "-m",
            "gpumarket.provider.ray_node",
            "--root",
            str(Path(self.config.root).resolve()),
            "--job",
            str(job_id),
        ]

    def _job_environment(self, spec: AnyJobSpec) -> dict[str, str]:
        environment = {SPEC_ENV: base64.b64encode(spec.canonical_bytes()).decode()}
        if self.node_containers is not None:
            environment[NODE_CONTAINERS_ENV] = json.dumps(self.node_containers, sort_keys=True)
        return environment

    # ------------------------------------------------------------------ Ray's record of a job

    def details(self, job_id: int) -> Any:
        """The Ray job's details, or None when the cluster has no job by this submission id."""
        try:
            return self.client.get_job_info(self.submission_id(job_id))
        except RuntimeError as error:  # the client's answer to an unknown submission id
            if "does not exist" in str(error) or "404" in str(error):
                return None
            raise

    def _status(self, job_id: int) -> str | None:
        details = self.details(job_id)
        return None if details is None else str(details.status.value)

    def stop_submission(self, job_id: int) -> None:
        try:
            self.client.stop_job(self.submission_id(job_id))
        except RuntimeError as error:
            log.warning("job %d: stopping its Ray job failed: %s", job_id, error)

    # ------------------------------------------------------------------ running

    def start(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int] = (), *, max_seconds: float | None = None
    ) -> RayJob:
        """Submits the job; FileExistsError when it ran before (its directory, or a Ray job by its
        submission id, exists), ValueError for a spec this runtime does not run."""
        refusal = self.refusal(spec)
        if refusal is not None:
            raise ValueError(f"job {job_id}: {refusal}")
        limit = start_limit(job_id, spec, max_seconds)
        if self.paths(job_id).root.exists() or self.details(job_id) is not None:
            raise FileExistsError(f"job {job_id} was already submitted to the cluster")
        started_at = time.time()
        # The paid time is absolute (a job waiting to be placed is paid time too); without it, the
        # spec's own limit counts from the job's start on its node, as on one machine.
        deadline = started_at + (max_seconds if max_seconds is not None else limit + self.settings.start_timeout_s)
        entrypoint = shlex.join(
            [
                *self._node_command(job_id),
                "--deadline",
                repr(deadline),
                "--meter-interval",
                repr(self.config.meter_interval_s),
                "--poll",
                repr(self.config.poll_s),
                "--kill-grace",
                repr(self.config.kill_grace_s),
                *([] if self.config.meter_gpus else ["--no-meter-gpus"]),
            ]
        )
        self._submit(
            job_id,
            entrypoint=entrypoint,
            submission_id=self.submission_id(job_id),
            entrypoint_num_gpus=len(gpus),
            entrypoint_num_cpus=0,
            runtime_env={"env_vars": self._job_environment(spec)},
            metadata={"gpumarket_job": str(job_id), "gpumarket_owner": self.owner},
        )
        log.info("job %d: submitted to the cluster as %s, %d GPUs", job_id, self.submission_id(job_id), len(gpus))
        return RayJob(self, job_id, spec, tuple(gpus), started_at, deadline, resumed=False)

    def _submit(self, job_id: int, **submission: Any) -> None:
        """Submits to the job API, trying again while it answers that it cannot take a job yet (a
        5xx such as "No available agent to submit job": the head has not heard of a node's agent
        yet, or is overloaded) for up to ``submit_retry_s``; OSError when it never took it."""
        deadline = time.monotonic() + self.settings.submit_retry_s
        wait_s = 0.5
        while True:
            try:
                self.client.submit_job(**submission)
                return
            except (RuntimeError, ConnectionError) as error:
                transient = isinstance(error, ConnectionError) or "status code 5" in str(error)
                if not transient or time.monotonic() + wait_s > deadline:
                    raise OSError(f"the cluster refused the job: {error}") from None
                log.warning("job %d: the cluster's job API cannot take it yet (%s); trying again", job_id, error)
            time.sleep(wait_s)
            wait_s = min(wait_s * 2, 5.0)

    def run(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int] = (), *, max_seconds: float | None = None
    ) -> RunResult:
        return self.start(job_id, spec, gpus, max_seconds=max_seconds).wait()

    def concluded(self, job_id: int, spec: AnyJobSpec, started_at: float, details: Any, *, resumed: bool) -> RunResult:
        """The ending of a job whose Ray job is over, from the files its node wrote (the node's
        ``conclude``; repeating it here reads the same files and gives the same hashes)."""
        paths = self.paths(job_id)
        if not (paths.usage.exists() and paths.result.exists()):
            status = "unknown to the cluster" if details is None else f"{details.status.value}: {details.message}"
            for why in (never_placed_file(self.config.root, job_id), not_started_file(self.config.root, job_id)):
                if why.exists():
                    status = why.read_text()
            raise ProcessGone(f"job {job_id}: its Ray job ended without the job's ending ({status})")
        finished_at = paths.result.stat().st_mtime
        if details is not None and details.end_time:
            finished_at = details.end_time / 1000
        return conclude(
            job_id,
            spec,
            paths,
            exit_code=read_exit_status(paths.exit_status),
            stop_reason=read_stop_reason(paths.stop_reason),
            usage=lambda: _no_usage(job_id),
            started_at=started_at,
            finished_at=finished_at,
            resumed=resumed,
        )

    # ------------------------------------------------------------------ after a restart

    def find_started(self, job_id: int) -> tuple[int, int] | None:
        return (0, 0) if self._status(job_id) in ("PENDING", "RUNNING") else None

    def recorded_start(self, job_id: int) -> tuple[int, float] | None:
        details = self.details(job_id)
        if details is None or not details.start_time:
            return None
        return 0, details.start_time / 1000

    def is_alive(self, job_id: int, pid: int, start_ticks: int | None) -> bool:
        return self._status(job_id) in ("PENDING", "RUNNING")

    def has_ended(self, job_id: int) -> bool:
        paths = self.paths(job_id)
        status = self._status(job_id)
        return (status is None or status in _TERMINAL) and paths.usage.exists() and paths.result.exists()

    def adopt(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int], pid: int, start_ticks: int, started_at: float
    ) -> RayJob:
        refusal = self.refusal(spec)
        if refusal is not None:
            raise TypeError(f"job {job_id}: {refusal}")
        if not self.is_alive(job_id, pid, start_ticks):
            raise ProcessGone(f"job {job_id}: its Ray job is no longer running")
        deadline = _recorded_deadline(self.paths(job_id), started_at, spec)
        log.info("job %d: following its Ray job %s again", job_id, self.submission_id(job_id))
        job = RayJob(self, job_id, spec, tuple(gpus), started_at, deadline, resumed=True)
        stopping = read_stop_reason(stop_request_file(self.paths(job_id)))
        if stopping is not None:
            job.stop(stopping)
        return job

    def finalize(
        self, job_id: int, spec: AnyJobSpec, pid: int, start_ticks: int | None, started_at: float
    ) -> RunResult:
        return self.concluded(job_id, spec, started_at, self.details(job_id), resumed=True)

    def placement(self, job_id: int) -> dict[str, Any] | None:
        """Where the job ran: the node's host and the job's GPUs (as the node wrote them), and the
        node Ray records for it, with its address; None before the node started it."""
        try:
            placed = json.loads(placement_file(self.paths(job_id)).read_text())
        except (FileNotFoundError, ValueError):
            return None
        node = self._nodes.get(job_id)
        if node is None:  # asked of the cluster once: a job's node never changes
            details = self.details(job_id)
            if details is not None and details.driver_node_id:
                node = {"node_id": details.driver_node_id, "address": node_address(details.driver_node_id)}
                if node["address"] is not None:
                    self._nodes[job_id] = node
        return {**placed, **(node or {})}

    def discard(self, job_id: int) -> None:
        """Removes a job that never started: its directory, and the Ray job's record (so the job
        can be submitted again under its id)."""
        if self._status(job_id) in _TERMINAL:
            try:
                self.client.delete_job(self.submission_id(job_id))
            except RuntimeError as error:
                log.warning("job %d: deleting its Ray job failed: %s", job_id, error)
        shutil.rmtree(self.paths(job_id).root, ignore_errors=True)
        never_placed_file(self.config.root, job_id).unlink(missing_ok=True)
        not_started_file(self.config.root, job_id).unlink(missing_ok=True)

    def sweep(self, keep: set[int]) -> list[int]:
        """Stops this agent's Ray jobs still running for jobs it no longer keeps."""
        prefix = submission_prefix(self.owner)
        swept = []
        for details in self.client.list_jobs():
            submission = details.submission_id or ""
            suffix = submission.removeprefix(prefix)
            if submission == suffix or not suffix.isdigit() or int(suffix) in keep:
                continue
            if str(details.status.value) not in _TERMINAL:
                self.client.stop_job(submission)
                swept.append(int(suffix))
        return swept


def _recorded_deadline(paths: JobPaths, started_at: float, spec: AnyJobSpec) -> float:
    """The deadline the job was submitted with, as its node recorded it; before the node started
    it, the spec's limit from the submission (later than the real one: the node enforces that)."""
    try:
        return float(json.loads(placement_file(paths).read_text())["deadline"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return started_at + spec.limits.max_seconds


def _no_usage(job_id: int) -> Any:
    # Only reached when usage.json vanished between the check and the read.
    raise ProcessGone(f"job {job_id}: its usage record is gone")
