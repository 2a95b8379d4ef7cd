"""What runs on the cluster node Ray chose for a job: the job itself, as one machine runs it.

The cluster runtime (ray_runner.py) submits each job to Ray with this module as its entrypoint::

    <python> -m gpumarket.provider.ray_node --root <jobs folder> --job <id> --deadline <unix time>

with the spec in its environment and the job's GPUs as Ray assigned them in
``CUDA_VISIBLE_DEVICES`` (ray_files.py names what the two sides share). Here, on the node, the
single machine's runtime runs the job: a version 2 spec in a container under this node's podman,
with the agent's container settings (``GPUMARKET_NODE_CONTAINERS``: the same sandbox, limits and
owner label as on one machine), a version 1 spec with the process runtime (runner.py). Either
keeps its job directory under the shared jobs folder, its limits, its meter (CPU, memory, and NVML
on the job's GPUs when the node has them) and its ending (usage.json, result.json). So a job's
files, hashes and limits are the same whichever runtime ran it, and the agent reads them from the
shared folder as they are written.

A container job's image is normally on the node already: the agent had every node that could take
the job pull it before submitting (``--pull-image``: this module pulls the image of the spec in its
environment and prints ``{"ok": true}`` or ``{"code", "detail"}``). Placed on a node that lacks it
(a node that joined since), the entrypoint pulls it within the job's time; when it cannot, it writes
why in ``job-<id>.not-started`` and the job is lost.

GPUs: the container gets the job's GPUs as CDI devices only where this node has an NVIDIA driver;
a node that declares GPUs to Ray without one (a test cluster) gives its containers none.

Besides, it writes ``placement.json`` (the node's host name, the GPUs Ray gave the job, the
pids of the job and of this process there, and the job's deadline) and carries out a stop the agent
asks for by writing ``stop_request`` (the reason) into the job's directory, or by stopping the Ray
job (SIGTERM reaches this process): either way the job gets SIGTERM, then SIGKILL after the grace
period, and the job's ending is written as for any stopped job.

The wall-time limit is the spec's, counted from the job's start here, or less when ``--deadline``
(the end of the job's paid time, absolute: the time a job waited to be placed is paid time too)
comes first.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from gpumarket.agentapi.spec import AnyJobSpec, JobSpec, parse_spec
from gpumarket.containers.engine import ImageUnavailable
from gpumarket.measure.nvml import nvml_available
from gpumarket.provider.container_runner import ContainerRunner
from gpumarket.provider.jobdir import RunnerConfig, read_stop_reason, write_atomic
from gpumarket.provider.ray_files import (
    NODE_CONTAINERS_ENV,
    SPEC_ENV,
    not_started_file,
    placement_file,
    stop_request_file,
)
from gpumarket.provider.runner import Runner
from gpumarket.provider.runtime import RuntimeUnavailable, node_container_runtime

__all__ = ["NOT_STARTED_EXIT", "main"]

log = logging.getLogger("gpumarket.provider.ray_node")

NOT_STARTED_EXIT = 3  # the job could not start here (its image, or this node's podman): see not_started_file


def _assigned_gpus() -> tuple[int, ...]:
    """The GPU indices Ray gave this job (CUDA_VISIBLE_DEVICES, as Ray sets it for the entrypoint)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return tuple(int(part) for part in value.split(",") if part.strip().isdigit())


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpumarket.provider.ray_node", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="the jobs folder, shared by every node")
    parser.add_argument("--job", type=int, required=True, help="the on-chain job id")
    parser.add_argument("--deadline", type=float, help="unix time the job must end by")
    parser.add_argument("--pull-image", type=float, metavar="SECONDS", help="only get the spec's image, within SECONDS")
    parser.add_argument("--meter-interval", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--kill-grace", type=float, default=2.0)
    parser.add_argument("--no-meter-gpus", action="store_true")
    args = parser.parse_args(argv)
    if (args.deadline is None) == (args.pull_image is None):
        parser.error("give --deadline (run the job) or --pull-image (only get its image)")
    return args


def _job_runtime(spec: AnyJobSpec, config: RunnerConfig) -> Runner | ContainerRunner:
    """The single machine's runtime for ``spec``: containers for version 2, processes for 1."""
    if isinstance(spec, JobSpec):
        return Runner(config)
    described = os.environ.get(NODE_CONTAINERS_ENV)
    if described is None:
        raise RuntimeUnavailable(f"a version {spec.version} spec, and the agent sent no container settings")
    return node_container_runtime(json.loads(described), config)


def _pull_only(runner: ContainerRunner, job_id: int, spec: AnyJobSpec, timeout_s: float) -> int:
    try:
        runner.prepare(job_id, spec, timeout_s=timeout_s)
    except ImageUnavailable as error:
        print(json.dumps({"code": error.code, "detail": error.detail}))
        return NOT_STARTED_EXIT
    print(json.dumps({"ok": True}))
    return 0


def _not_started(args: argparse.Namespace, code: str, detail: str) -> int:
    log.error("job %d: not started on %s: %s", args.job, socket.gethostname(), detail)
    write_atomic(
        not_started_file(args.root, args.job),
        json.dumps({"code": code, "detail": detail, "host": socket.gethostname()}).encode(),
    )
    return NOT_STARTED_EXIT


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _arguments(argv)
    spec = parse_spec(base64.b64decode(os.environ[SPEC_ENV]))
    gpus = _assigned_gpus()
    config = RunnerConfig(
        root=args.root,
        meter_interval_s=args.meter_interval,
        # NVML on this node's GPUs where it has a driver: the agent cannot know each node's.
        meter_gpus=not args.no_meter_gpus and bool(gpus) and nvml_available(),
        poll_s=args.poll,
        kill_grace_s=args.kill_grace,
    )
    try:
        runner = _job_runtime(spec, config)
    except RuntimeUnavailable as error:
        if args.pull_image is not None:
            print(json.dumps({"code": "image_unavailable", "detail": f"{socket.gethostname()}: {error}"}))
            return NOT_STARTED_EXIT
        return _not_started(args, "start_failed", str(error))
    if args.pull_image is not None:
        assert isinstance(runner, ContainerRunner)  # a process runtime has no image to get
        return _pull_only(runner, args.job, spec, args.pull_image)
    if isinstance(runner, ContainerRunner):
        try:
            runner.prepare(args.job, spec, timeout_s=max(args.deadline - time.time(), 0.001))
        except ImageUnavailable as error:
            return _not_started(args, error.code, error.detail)
        if not nvml_available():
            gpus = ()  # Ray's GPUs here are declared, not devices: no CDI device to give
    # Placed too late to run at all: start it for an instant, so its ending is written like any
    # job stopped at its limit (the agent and the oracles read one kind of ending).
    left = max(args.deadline - time.time(), 0.001)
    job = runner.start(args.job, spec, gpus, max_seconds=left)  # the spec's limit from now, or less
    paths = runner.paths(args.job)
    write_atomic(
        placement_file(paths),
        json.dumps(
            {
                "host": socket.gethostname(),
                "gpus": list(gpus),
                "pid": job.pid,
                "entrypoint_pid": os.getpid(),
                "deadline": job.started_at + job.max_seconds,
            },
            sort_keys=True,
        ).encode(),
    )
    # SIGTERM (the agent stopped the Ray job) stops the job's group as the agent's stop would.
    signal.signal(signal.SIGTERM, lambda *_: job.stop("stopped"))
    ended = threading.Event()

    def follow_stop_requests() -> None:
        while not ended.wait(config.poll_s):
            reason = read_stop_reason(stop_request_file(paths))
            if reason is not None:
                job.stop(reason)
                return

    watcher = threading.Thread(target=follow_stop_requests, name=f"job-{args.job}-stop-requests", daemon=True)
    watcher.start()
    try:
        result = job.wait()
    finally:
        ended.set()
    log.info("job %d: ended on %s, exit %s", args.job, socket.gethostname(), result.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
