"""A Ray cluster of several nodes on this machine, every address on loopback: for devnet and tests.

    with LocalRayCluster(workers=2, gpus_per_worker=2) as cluster:
        cluster.address, cluster.dashboard_url      # what a provider's agent is given
        connect(cluster.address, node_ip_address=cluster.driver_address)
        cluster.kill_worker(0)                      # a node dies under whatever it ran

It is Ray's own multi-node test cluster (``ray.cluster_utils.Cluster``): a head node holding no
GPUs (so nothing a job asks for lands on it) on 127.0.0.1, and ``workers`` nodes on 127.0.0.2,
127.0.0.3, ... (loopback addresses all: each node has an address of its own, as on a real
cluster, so a driver on this machine attaches to the head and any worker can die under it), each
its own raylet declaring ``gpus_per_worker`` GPUs. Ray schedules on those as on real ones (a task or job asking for two
gets two, with CUDA_VISIBLE_DEVICES naming them); only the devices themselves are absent, so
jobs and provers run on the CPU.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from types import TracebackType
from typing import Any

from gpumarket.cluster.connect import LOOPBACK_ENV, ClusterError, require_ray

__all__ = ["LocalRayCluster"]

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class LocalRayCluster:
    """A head and ``workers`` worker nodes; ``start`` (or ``with``) brings them up, ``stop`` ends them."""

    def __init__(self, *, workers: int = 2, gpus_per_worker: int = 2, cpus_per_worker: int = 2) -> None:
        if workers < 1 or gpus_per_worker < 0 or cpus_per_worker < 1:
            raise ValueError("a local cluster needs at least one worker with at least one CPU")
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self._cluster: Any = None
        self._worker_nodes: list[Any] = []
        self._added = 0  # workers ever started: each gets the next loopback address
        self._temp_dir: str | None = None
        self.dashboard_url = ""

    @property
    def address(self) -> str:
        """The GCS address (host:port) drivers join."""
        if self._cluster is None:
            raise ClusterError("the local cluster is not started")
        return str(self._cluster.address)

    @property
    def driver_address(self) -> str:
        """The address a driver on this machine joins with: the head's (each node has its own)."""
        return LOOPBACK

    @property
    def total_gpus(self) -> int:
        """GPUs the live workers declare."""
        return len(self._worker_nodes) * self.gpus_per_worker

    def start(self, *, timeout_s: float = 120.0) -> LocalRayCluster:
        require_ray()
        # This process (if Ray is not imported yet: Ray reads it once) and every process it starts.
        os.environ.update(LOOPBACK_ENV)
        from ray._common.utils import get_ray_temp_dir
        from ray.cluster_utils import Cluster

        # Ray's test cluster records the head's address in its default temp folder (/tmp/ray)
        # whatever temp_dir says, and fails where no Ray ran on this machine before: create it.
        os.makedirs(get_ray_temp_dir(), exist_ok=True)  # type: ignore[no-untyped-call]

        dashboard_port = _free_port()
        # A folder of its own for the cluster's sockets and logs (short: unix socket paths are
        # limited), so clusters started side by side never read each other's session files.
        self._temp_dir = tempfile.mkdtemp(prefix="gmray-", dir="/tmp")
        self._cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "node_ip_address": LOOPBACK,
                "num_cpus": 1,
                "num_gpus": 0,
                "include_dashboard": True,
                "dashboard_host": LOOPBACK,
                "dashboard_port": dashboard_port,
                "temp_dir": self._temp_dir,
                # Ports of their own, not Ray's fixed defaults: two local clusters at once (a test
                # session's and a devnet's) would otherwise share the head's agent port, and the
                # second one's job API would find no agent to submit through.
                "dashboard_agent_listen_port": _free_port(),
                "ray_client_server_port": _free_port(),
                "metrics_export_port": _free_port(),
                "runtime_env_agent_port": _free_port(),
            },
        )
        self.dashboard_url = f"http://{LOOPBACK}:{dashboard_port}"
        for _ in range(self.workers):
            self.add_worker()
        self._cluster.wait_for_nodes(timeout=timeout_s)
        self._wait_for_job_api(time.monotonic() + timeout_s)
        return self

    def _wait_for_job_api(self, deadline: float) -> None:
        """The job API takes jobs a while after the head is up (its dashboard first, then the
        nodes' agents it submits through): wait until a trivial job has run to its end."""
        from ray.job_submission import JobStatus, JobSubmissionClient

        probe: str | None = None
        while True:
            try:
                client = JobSubmissionClient(self.dashboard_url)
                if probe is None:
                    probe = client.submit_job(entrypoint="true", entrypoint_num_cpus=0)
                status = client.get_job_status(probe)
                if status == JobStatus.SUCCEEDED:
                    client.delete_job(probe)
                    return
                if status in (JobStatus.FAILED, JobStatus.STOPPED):
                    probe = None  # submitted too early: try again
            except Exception as error:  # not up yet: connection refused, or 5xx while it starts
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"the local cluster's job API at {self.dashboard_url} did not come up: {error}"
                    ) from None
            if time.monotonic() >= deadline:
                raise ClusterError(f"the local cluster's job API at {self.dashboard_url} ran no job in time")
            time.sleep(0.5)

    def add_worker(self) -> str:
        """Starts one more worker node (on the next loopback address); returns its node id."""
        self._added += 1
        node = self._cluster.add_node(
            node_ip_address=f"127.0.0.{self._added + 1}",
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            temp_dir=self._temp_dir,
            dashboard_agent_listen_port=_free_port(),
            metrics_export_port=_free_port(),
            runtime_env_agent_port=_free_port(),
        )
        self._worker_nodes.append(node)
        return str(node.node_id)

    def worker_node_ids(self) -> list[str]:
        return [str(node.node_id) for node in self._worker_nodes]

    def kill_worker(self, index: int) -> str:
        """Kills worker ``index``'s raylet and everything Ray runs there, at once (a node that
        dies, not one that drains); returns its node id."""
        node = self._worker_nodes.pop(index)
        self._cluster.remove_node(node, allow_graceful=False)
        return str(node.node_id)

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None
            self._worker_nodes = []
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
