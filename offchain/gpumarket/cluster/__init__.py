"""A provider's Ray cluster: connecting to it, reading its GPUs, and a local one for devnet and tests.

Ray is the optional ``ray`` extra (``pip install 'gpumarket[ray]'``); nothing here imports it
until asked, so the core install works without it (``RayMissing`` says what to install).
"""

from gpumarket.cluster.connect import (
    ClusterError,
    ClusterInfo,
    RayMissing,
    cluster_info,
    connect,
    disconnect,
    node_address,
    require_ray,
)
from gpumarket.cluster.local import LocalRayCluster

__all__ = [
    "ClusterError",
    "ClusterInfo",
    "LocalRayCluster",
    "RayMissing",
    "cluster_info",
    "connect",
    "disconnect",
    "node_address",
    "require_ray",
]
