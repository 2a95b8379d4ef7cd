"""What the agent asks of a job runtime, whichever runs the jobs.

Three runtimes implement ``JobRuntime``:

- ``container`` (container_runner.py, the default): each job in its own OCI container under
  Podman: the spec's image pinned by digest, a read-only root, the job's work directory as the
  only writable place, a non-root user, no capabilities, no network, cgroup limits, only its
  assigned GPUs. It runs job specs of version 2.
- ``process`` (runner.py, development only): each job a host process group running as the
  agent's user. It runs job specs of version 1, and only where the agent's configuration names
  it explicitly: it is not a sandbox.
- ``ray`` (ray_runner.py): each job submitted to the provider's Ray cluster, which places it on a
  node with its GPUs free; there the container runtime (version 2 specs; podman on every node)
  or, named explicitly for development, the process runtime (version 1) runs it (ray_node.py),
  in a jobs folder shared by every node.

All keep a job's files in the same directory layout (jobdir.py) and end a job the same way
(``jobdir.conclude``), so the result and usage hashes mean the same whichever ran it. The agent
stores a job's ``pid`` and ``start_ticks`` as the runtime gives them: a process runtime's
wrapper, a container's main process; only the runtime interprets them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gpumarket.agentapi.spec import AnyJobSpec
from gpumarket.cluster import ClusterError
from gpumarket.containers.engine import EngineError, PodmanEngine
from gpumarket.provider.container_runner import ContainerRunner, ContainerSettings, check_offer
from gpumarket.provider.jobdir import JobPaths, RunnerConfig, RunResult, StopReason
from gpumarket.provider.ray_runner import JOBS_IN, RayRunner, RaySettings, check_shared_folder
from gpumarket.provider.runner import Runner

__all__ = [
    "JOBS_IN",
    "RUNTIMES",
    "JobRuntime",
    "RaySettings",
    "RunningJobHandle",
    "RuntimeSettings",
    "RuntimeUnavailable",
    "container_runtime",
    "make_runtime",
    "node_container_runtime",
    "node_containers",
]

RUNTIMES = ("container", "process", "ray")


class RunningJobHandle(Protocol):
    """A started or adopted job; ``wait`` follows it to its end (call it once)."""

    job_id: int
    gpus: tuple[int, ...]
    pid: int
    start_ticks: int
    started_at: float

    @property
    def resumed(self) -> bool: ...

    def stop(self, reason: StopReason = "stopped") -> None: ...

    def wait(self) -> RunResult: ...


class JobRuntime(Protocol):
    """Runs jobs under ``config.root`` and finds them again after an agent restart."""

    name: str  # "container" or "process": shown in the agent's /health and each job's status
    pulls_images: bool  # whether ``prepare`` may take long (the agent then runs it off the request thread)
    config: RunnerConfig

    def paths(self, job_id: int) -> JobPaths: ...

    def offer(self) -> dict[str, Any]:
        """What the agent's /health says of this runtime: ``runtime`` and, for containers, the
        ``networks`` a spec may name and ``max_image_bytes``."""
        ...

    def refusal(self, spec: AnyJobSpec) -> str | None:
        """Why this runtime cannot run ``spec`` here (its version, a network not offered), or None."""
        ...

    def capacity_refusal(self, gpu_count: int) -> str | None:
        """Why a job of ``gpu_count`` GPUs cannot be placed now beyond the agent's own GPU
        accounting (a cluster busy with other work), or None."""
        ...

    def placement(self, job_id: int) -> dict[str, Any] | None:
        """Where the job runs or ran when that is not this machine (a cluster's node), or None."""
        ...

    def prepare(self, job_id: int, spec: AnyJobSpec, *, timeout_s: float | None = None) -> None:
        """Gets what the job needs before it starts (a container's image), within ``timeout_s``
        when given; ImageUnavailable when it cannot."""
        ...

    def start(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int] = (), *, max_seconds: float | None = None
    ) -> RunningJobHandle: ...

    def adopt(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int], pid: int, start_ticks: int, started_at: float
    ) -> RunningJobHandle: ...

    def finalize(
        self, job_id: int, spec: AnyJobSpec, pid: int, start_ticks: int | None, started_at: float
    ) -> RunResult: ...

    def is_alive(self, job_id: int, pid: int, start_ticks: int | None) -> bool: ...

    def has_ended(self, job_id: int) -> bool: ...

    def find_started(self, job_id: int) -> tuple[int, int] | None: ...

    def recorded_start(self, job_id: int) -> tuple[int, float] | None: ...

    def discard(self, job_id: int) -> None: ...

    def sweep(self, keep: set[int]) -> list[int]:
        """Removes what this agent runs for jobs not in ``keep`` (leftover containers); their ids."""
        ...


@dataclass(frozen=True)
class RuntimeSettings:
    """Which runtime the agent runs jobs with, and the container runtime's settings.

    ``kind``: "container" (the default), "process" (development only: it must be named) or "ray"
    (a cluster: ``ray`` holds where it is).
    ``podman``: the podman program; ``containers_conf``: a containers.conf for it (CONTAINERS_CONF);
    ``networks``: networks a spec may name besides "none" (a provider that offers none keeps the
    default); ``max_image_bytes``: the largest image the agent pulls (as its registry's manifest
    declares it); ``pull_timeout_s``: one pull's limit; ``job_user``: uid:gid jobs run as in
    their containers (never root); ``registries``: registries not served at https://<host>
    (host[:port] -> base URL), where the agent sizes images before pulling them."""

    kind: str = "container"
    podman: str = "podman"
    containers_conf: Path | None = None
    networks: tuple[str, ...] = ()
    max_image_bytes: int = ContainerSettings.max_image_bytes
    pull_timeout_s: float = ContainerSettings.pull_timeout_s
    job_user: str = ContainerSettings.user
    registries: Mapping[str, str] = field(default_factory=dict)
    ray: RaySettings | None = None

    def __post_init__(self) -> None:
        if self.kind not in RUNTIMES:
            raise ValueError(f"runtime {self.kind!r}: expected one of {', '.join(RUNTIMES)}")
        if (self.kind == "ray") != (self.ray is not None):
            raise ValueError("the ray runtime, and only it, needs the cluster's addresses (--ray-address)")
        check_offer(self.networks, self.max_image_bytes, self.pull_timeout_s)

    @property
    def runs_containers(self) -> bool:
        """Whether jobs run in containers: here, or on the cluster's nodes."""
        return self.kind == "container" or (self.ray is not None and self.ray.jobs_in == "container")


def container_owner(provider: str, root: Path) -> str:
    """The label value that marks one agent's containers: its provider and its jobs' folder, so
    two agents on one host (a devnet, a test run) never adopt or remove each other's."""
    where = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return f"{provider.lower()}-{where}"


class RuntimeUnavailable(ValueError):
    """The runtime cannot run jobs safely on this host; the message says why and what to do."""


def make_runtime(settings: RuntimeSettings, config: RunnerConfig, provider: str) -> JobRuntime:
    """The runtime ``settings`` name, for the agent of ``provider`` keeping its jobs under
    ``config.root``. RuntimeUnavailable when podman cannot be run, or would ignore jobs' limits,
    or when the cluster cannot be joined or its nodes do not share the jobs folder."""
    owner = container_owner(provider, config.root)
    if settings.kind == "process":
        return Runner(config)
    if settings.kind == "ray":
        assert settings.ray is not None  # __post_init__
        in_containers = settings.ray.jobs_in == "container"
        try:
            runner = RayRunner(
                config, settings.ray, owner, node_containers=node_containers(settings, owner) if in_containers else None
            )
            check_shared_folder(Path(config.root))
        except ClusterError as error:
            raise RuntimeUnavailable(f"the ray runtime cannot run jobs: {error}") from None
        return runner
    return container_runtime(settings, config, owner)


def container_runtime(settings: RuntimeSettings, config: RunnerConfig, owner: str) -> ContainerRunner:
    """The container runtime on this machine (the agent's, or a cluster node's, ray_node.py);
    RuntimeUnavailable when podman cannot be run or would ignore jobs' limits."""
    engine = PodmanEngine(binary=settings.podman, containers_conf=settings.containers_conf)
    try:
        refusal = engine.host().limits_refusal()
    except EngineError as error:
        raise RuntimeUnavailable(f"the container runtime needs podman, which did not answer: {error}") from None
    if refusal is not None:
        raise RuntimeUnavailable(f"the container runtime cannot run jobs here: {refusal}")
    return ContainerRunner(
        config,
        ContainerSettings(
            engine=engine,
            owner=owner,
            user=settings.job_user,
            networks=settings.networks,
            max_image_bytes=settings.max_image_bytes,
            pull_timeout_s=settings.pull_timeout_s,
            registries=settings.registries,
        ),
    )


def node_containers(settings: RuntimeSettings, owner: str) -> dict[str, Any]:
    """How a cluster's nodes run jobs in containers, as the agent hands it to each job's
    entrypoint (JSON in its environment): this agent's container settings and owner label. The
    podman program and the containers.conf are paths on the nodes (the same install as here)."""
    return {
        "podman": settings.podman,
        "containers_conf": None if settings.containers_conf is None else str(settings.containers_conf),
        "networks": list(settings.networks),
        "max_image_bytes": settings.max_image_bytes,
        "pull_timeout_s": settings.pull_timeout_s,
        "job_user": settings.job_user,
        "registries": dict(settings.registries),
        "owner": owner,
    }


def node_container_runtime(described: Mapping[str, Any], config: RunnerConfig) -> ContainerRunner:
    """The container runtime on a cluster node, as ``node_containers`` described it."""
    conf = described.get("containers_conf")
    settings = RuntimeSettings(
        kind="container",
        podman=str(described["podman"]),
        containers_conf=None if conf is None else Path(conf),
        networks=tuple(described["networks"]),
        max_image_bytes=int(described["max_image_bytes"]),
        pull_timeout_s=float(described["pull_timeout_s"]),
        job_user=str(described["job_user"]),
        registries=dict(described["registries"]),
    )
    return container_runtime(settings, config, str(described["owner"]))
