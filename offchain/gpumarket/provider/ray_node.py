"""What runs on the cluster node Ray chose for a job: the job itself, as the process runtime runs it.

The cluster runtime (ray_runner.py) submits each job to Ray with this module as its entrypoint::

    <python> -m gpumarket.provider.ray_node --root <jobs folder> --job <id> --deadline <unix time>

with the spec (canonical JSON, base64) in ``GPUMARKET_JOB_SPEC`` and the job's GPUs as Ray
assigned them in ``CUDA_VISIBLE_DEVICES``. Here, on the node, the process runtime (runner.py)
does everything it does on a single machine: the job's directory under the shared jobs folder,
its process group, its wall-time and output limits, the meter (CPU, memory, and NVML on the
job's GPUs when the node has them) and the ending (usage.json, result.json). So a job's files,
hashes and limits are the same whichever runtime ran it, and the agent reads them from the
shared folder as they are written.

Besides, it writes ``placement.json`` (the node's host name, the GPUs Ray gave the job, the
pids of the job and of this process there, and the job's deadline) and carries out a stop the agent asks for by writing
``stop_request`` (the reason) into the job's directory, or by stopping the Ray job (SIGTERM
reaches this process): either way the job's group gets SIGTERM, then SIGKILL after the grace
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

from gpumarket.agentapi.spec import JobSpec, parse_spec
from gpumarket.measure.nvml import nvml_available
from gpumarket.provider.jobdir import JobPaths, RunnerConfig, read_stop_reason, write_atomic
from gpumarket.provider.runner import Runner

__all__ = ["SPEC_ENV", "STOP_REQUEST", "main", "placement_file", "stop_request_file"]

log = logging.getLogger("gpumarket.provider.ray_node")

SPEC_ENV = "GPUMARKET_JOB_SPEC"
STOP_REQUEST = "stop_request"
PLACEMENT = "placement.json"


def stop_request_file(paths: JobPaths) -> Path:
    return paths.root / STOP_REQUEST


def placement_file(paths: JobPaths) -> Path:
    return paths.root / PLACEMENT


def _assigned_gpus() -> tuple[int, ...]:
    """The GPU indices Ray gave this job (CUDA_VISIBLE_DEVICES, as Ray sets it for the entrypoint)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return tuple(int(part) for part in value.split(",") if part.strip().isdigit())


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpumarket.provider.ray_node", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="the jobs folder, shared by every node")
    parser.add_argument("--job", type=int, required=True, help="the on-chain job id")
    parser.add_argument("--deadline", type=float, required=True, help="unix time the job must end by")
    parser.add_argument("--meter-interval", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--kill-grace", type=float, default=2.0)
    parser.add_argument("--no-meter-gpus", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _arguments(argv)
    spec = parse_spec(base64.b64decode(os.environ[SPEC_ENV]))
    if not isinstance(spec, JobSpec):
        log.error("job %d: a version %d spec; the cluster runtime runs version 1 specs", args.job, spec.version)
        return 2
    gpus = _assigned_gpus()
    config = RunnerConfig(
        root=args.root,
        meter_interval_s=args.meter_interval,
        # NVML on this node's GPUs where it has a driver: the agent cannot know each node's.
        meter_gpus=not args.no_meter_gpus and bool(gpus) and nvml_available(),
        poll_s=args.poll,
        kill_grace_s=args.kill_grace,
    )
    runner = Runner(config)
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
