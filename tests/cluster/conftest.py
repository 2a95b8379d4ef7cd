"""A real multi-node Ray cluster on this machine, shared by the cluster tests (marker `ray`).

One cluster per session (it takes 15 to 30 seconds to start on two cores): a head without GPUs
and two worker nodes declaring two GPUs each, every address on loopback. A test that kills a
worker node gets a cluster of its own (``doomed_ray_cluster``) and runs last: after a node's
death, Ray's job API on that cluster can fail later submissions (the job supervisor's class
cannot be loaded), which would fail every test after it on the shared one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gpumarket.cluster import LocalRayCluster, connect, disconnect
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
    already up, two clusters' processes on two cores slow its jobs past their wall-time limits.
    The tests that kill a node last, each on a cluster of its own, for the same reason."""

    def order(item: pytest.Item) -> int:
        if "test_devnet_on_ray" in item.nodeid:
            return 0
        return 2 if "doomed_ray_cluster" in getattr(item, "fixturenames", ()) else 1

    items.sort(key=order)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """The shared cluster, this process joined to it as a driver."""
    pytest.importorskip("ray", reason="the cluster tests need the ray extra: make venv installs it")
    with LocalRayCluster(workers=2, gpus_per_worker=2) as cluster:
        connect(cluster.address, node_ip_address=cluster.driver_address)
        yield cluster
        import ray

        ray.shutdown()


@pytest.fixture
def doomed_ray_cluster(ray_cluster: LocalRayCluster) -> Iterator[LocalRayCluster]:
    """A cluster of its own for a test that kills one of its nodes; this process drives it for
    the test, then drives the shared one again."""
    disconnect()
    try:
        with LocalRayCluster(workers=2, gpus_per_worker=2) as cluster:
            connect(cluster.address, node_ip_address=cluster.driver_address)
            try:
                yield cluster
            finally:
                disconnect()
    finally:
        connect(ray_cluster.address, node_ip_address=ray_cluster.driver_address)
