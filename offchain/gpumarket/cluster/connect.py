"""Connecting the agent to its Ray cluster, and what the cluster holds.

The agent is a Ray *driver*: it submits jobs through the cluster's job API (the dashboard's
HTTP address) and runs the challenge's prover tasks through the cluster's GCS address. Both
addresses come from the provider's configuration; ``connect`` is idempotent within a process.

A cluster whose every address is loopback (a devnet, the tests) needs
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in the environment of every process that connects:
otherwise Ray rewrites 127.0.0.1 to the machine's outward address, where a loopback cluster
does not listen. Ray reads it once, when first imported: set it before (``LocalRayCluster``
sets it for the processes it starts; a test session sets it first thing). A real cluster never
needs it.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["ClusterError", "ClusterInfo", "RayMissing", "cluster_info", "connect", "node_address", "require_ray"]

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

_lock = threading.Lock()
_connected_to: str | None = None


class ClusterError(RuntimeError):
    """The cluster cannot be reached, or holds nothing this agent can sell."""


class RayMissing(ClusterError):
    """Ray is not installed: the cluster runtime needs the ``ray`` extra."""


def require_ray() -> None:
    """RayMissing, saying what to install, when Ray is not importable."""
    if importlib.util.find_spec("ray") is None:
        raise RayMissing("the ray runtime needs Ray: pip install 'gpumarket[ray]' (make venv installs it)")


def connect(address: str, *, node_ip_address: str | None = None) -> None:
    """Join the cluster at ``address`` (its GCS, host:port) as a driver, once per process;
    ClusterError when another cluster is already joined or this one does not answer.
    ``node_ip_address``: this machine's address in the cluster (default: Ray's guess; a local
    cluster's drivers give the head's, LocalRayCluster.driver_address)."""
    global _connected_to
    require_ray()
    import ray

    with _lock:
        if _connected_to == address and ray.is_initialized():
            return
        if _connected_to is not None and ray.is_initialized():
            raise ClusterError(f"this process already drives the cluster at {_connected_to}, not {address}")
        try:
            # The driver's own logs stay out of the agent's output; jobs log to their own files.
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level="WARNING",
                configure_logging=False,
                **({"_node_ip_address": node_ip_address} if node_ip_address else {}),
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ClusterError(
                f"the Ray cluster at {address} did not answer: {type(error).__name__}: {error}"
            ) from None
        _connected_to = address


def disconnect() -> None:
    """Leave the cluster this process drives, if any (a test moving to another cluster)."""
    global _connected_to
    with _lock:
        if _connected_to is None:
            return
        import ray

        ray.shutdown()
        _connected_to = None


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster's GPUs now: in total and free, and the alive nodes that hold them (each:
    node_id, address, gpus, free_gpus)."""

    total_gpus: int
    free_gpus: int
    nodes: tuple[dict[str, Any], ...]

    @property
    def most_free_on_one_node(self) -> int:
        """The largest job one node can take now: a job's GPUs are on one node (its entrypoint's)."""
        return max((node["free_gpus"] for node in self.nodes), default=0)


def cluster_info() -> ClusterInfo:
    """What the joined cluster holds (``connect`` first). Counts whole GPUs only: a job is sold
    whole GPUs, so a fraction in use makes that GPU busy."""
    import ray
    from ray._private.state import available_resources_per_node  # Ray's public API has no per-node view

    free_by_node = available_resources_per_node()
    nodes = tuple(
        {
            "node_id": node["NodeID"],
            "address": node["NodeManagerAddress"],
            "gpus": int(node["Resources"].get("GPU", 0)),
            "free_gpus": int(free_by_node.get(node["NodeID"], {}).get("GPU", 0)),
        }
        for node in ray.nodes()
        if node.get("Alive")
    )
    return ClusterInfo(
        total_gpus=sum(node["gpus"] for node in nodes), free_gpus=sum(node["free_gpus"] for node in nodes), nodes=nodes
    )


def node_address(node_id: str) -> str | None:
    """The address of the cluster's node ``node_id``, alive or dead; None when Ray does not know it."""
    import ray

    for node in ray.nodes():
        if node["NodeID"] == node_id:
            return str(node["NodeManagerAddress"])
    return None
