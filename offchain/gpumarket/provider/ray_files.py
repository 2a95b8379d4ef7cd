"""What the cluster runtime's two sides share: the agent (ray_runner.py) and the entrypoint on the
node Ray chose (ray_node.py) talk only through the job's environment and the shared jobs folder.

Environment of the entrypoint (Ray's runtime_env):

    GPUMARKET_JOB_SPEC         the spec, base64 of its canonical JSON
    GPUMARKET_NODE_CONTAINERS  how the node runs containers (JSON: podman, containers.conf,
                               job user, networks, image limits, registries, the agent's owner
                               label), present when the cluster runs jobs in containers

Files, in the jobs folder:

    job-<id>/placement.json    the node's host, the job's GPUs, pids, deadline (the node writes it)
    job-<id>/stop_request      a stop the agent asks for, with its reason (the node carries it out)
    job-<id>.not-started       why the node could not start the job (its image), JSON {code, detail}
    job-<id>.never-placed      why the agent gave up on a job Ray never placed
"""

from __future__ import annotations

from pathlib import Path

from gpumarket.provider.jobdir import JobPaths

__all__ = [
    "NODE_CONTAINERS_ENV",
    "SPEC_ENV",
    "never_placed_file",
    "not_started_file",
    "placement_file",
    "stop_request_file",
]

SPEC_ENV = "GPUMARKET_JOB_SPEC"
NODE_CONTAINERS_ENV = "GPUMARKET_NODE_CONTAINERS"


def stop_request_file(paths: JobPaths) -> Path:
    return paths.root / "stop_request"


def placement_file(paths: JobPaths) -> Path:
    return paths.root / "placement.json"


# The next two lie beside the job's directory: it exists only once the job started on its node.
def not_started_file(root: Path, job_id: int) -> Path:
    return Path(root) / f"job-{job_id}.not-started"


def never_placed_file(root: Path, job_id: int) -> Path:
    return Path(root) / f"job-{job_id}.never-placed"
