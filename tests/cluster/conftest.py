"""A real multi-node Ray cluster on this machine, shared by the cluster tests (marker `ray`).

One cluster per session (it takes 15 to 30 seconds to start on two cores): a head without GPUs
and two worker nodes declaring two GPUs each, every address on loopback. A test that kills a
worker node adds one back (``LocalRayCluster.add_worker``) before it ends, so the next test finds
the cluster whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gpumarket.cluster import LocalRayCluster, connect
from gpumarket.cluster.connect import LOOPBACK_ENV

# Ray reads this once, when it is first imported: before any test module imports it.
os.environ.update(LOOPBACK_ENV)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ray: needs a multi-node Ray cluster on this machine (started once per session); "
        "`make test-ray` runs these, `make test` leaves them out",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The devnet's tests first: devnet starts a cluster of its own, and with the shared one
    already up, two clusters' processes on two cores slow its jobs past their wall-time limits."""
    items.sort(key=lambda item: "test_devnet_on_ray" not in item.nodeid)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """The shared cluster, this process joined to it as a driver."""
    pytest.importorskip("ray", reason="the cluster tests need the ray extra: make venv installs it")
    with LocalRayCluster(workers=2, gpus_per_worker=2) as cluster:
        connect(cluster.address, node_ip_address=cluster.driver_address)
        yield cluster
        import ray

        ray.shutdown()
