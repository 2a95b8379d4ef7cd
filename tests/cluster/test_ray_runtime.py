"""The cluster runtime on a real multi-node Ray cluster: the agent submits, Ray places, the node runs.

Each test drives a real ProviderAgent (SQLite store, signed requests) whose runtime is the
RayRunner on the shared cluster (two worker nodes of two GPUs each); only the chain is the
MemoryJobSource double. The jobs folder is this machine's, which every local node shares. The
nodes run jobs as processes (version 1 specs) or, in the container tests, under podman in the
local Python image (version 2 specs), as a provider's cluster does by default.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpumarket.agentapi.auth import sign_request
from gpumarket.agentapi.errors import AgentError
from gpumarket.agentapi.spec import ContainerJobSpec, ContainerLimits
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent, PullPolicy
from gpumarket.provider.jobdir import RunnerConfig
from gpumarket.provider.ray_runner import RaySettings
from gpumarket.provider.runtime import RuntimeSettings, make_runtime
from gpumarket.provider.store import JobStatus, Store
from provider.support import CHAIN_ID, MARKET, MemoryJobSource, account, python_spec

pytestmark = pytest.mark.ray

CLIENT = account("client")
PROVIDER = account("provider")
# The spec's program: report the GPUs it was given and where, then write an output.
REPORT_GPUS = (
    "import os, socket, time, json\n"
    "time.sleep(float(os.environ.get('SLEEP', '0')))\n"
    "open('gpus.json', 'w').write(json.dumps(os.environ.get('CUDA_VISIBLE_DEVICES', '')))\n"
    "print('gpus', os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
)


class Provider:
    """An agent on the cluster, with its store and jobs folder; ``restart`` makes a new one on them."""

    def __init__(self, root: Path, cluster, *, jobs_in: str = "process", containers_conf: Path | None = None) -> None:
        self.root = root
        self.cluster = cluster
        self.jobs_in = jobs_in
        self.containers_conf = containers_conf
        self.jobs = MemoryJobSource()
        self.store = Store(root / "agent.sqlite")
        self.agent = self._agent()

    def _agent(self) -> ProviderAgent:
        config = RunnerConfig(root=self.root / "jobs", meter_interval_s=0.2, meter_gpus=False, kill_grace_s=0.5)
        cluster = RaySettings(
            address=self.cluster.address,
            dashboard_url=self.cluster.dashboard_url,
            node_ip_address=self.cluster.driver_address,
            stop_grace_s=10.0,
            jobs_in=self.jobs_in,
        )
        settings = RuntimeSettings(kind="ray", ray=cluster, containers_conf=self.containers_conf)
        runner = make_runtime(settings, config, PROVIDER.address)
        gpus = tuple(range(self.cluster.total_gpus))
        agent = ProviderAgent(
            AgentConfig(address=PROVIDER.address, chain_id=CHAIN_ID, market=MARKET, gpus=gpus),
            self.store,
            runner,
            self.jobs,
            make_prover("numpy"),
            pull_policy=PullPolicy(first_retry_s=0.2, max_retry_s=0.2, give_up_s=1.0),
        )
        agent.recover()
        return agent

    def restart(self) -> None:
        self.agent.close()  # jobs keep running on the cluster
        self.agent = self._agent()

    def submit(self, job_id: int, spec, *, gpus: int):
        self.jobs.put(job_id, client=CLIENT.address, provider=PROVIDER.address, spec_hash=spec.hash(), gpu_count=gpus)
        header = sign_request(
            CLIENT, action="put-spec", chain_id=CHAIN_ID, market=MARKET, job_id=job_id, spec_hash=spec.hash()
        ).to_header()
        return self.agent.submit_spec(job_id, spec.canonical_bytes(), header)

    def wait_state(self, job_id: int, states=(JobStatus.FINISHED, JobStatus.LOST), timeout_s: float = 120.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = self.store.get(job_id)
            if record is not None and record.state in states:
                return record
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} is {self.store.get(job_id)}, not one of {states}")

    def wait_placed(self, job_id: int, timeout_s: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            placement = self.agent.runner.placement(job_id)
            if placement is not None:
                return placement
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} was never placed")

    def close(self) -> None:
        self.agent.close(stop_jobs=True, timeout_s=30)
        self.store.close()


@pytest.fixture
def provider(tmp_path: Path, ray_cluster) -> Iterator[Provider]:
    provider = Provider(tmp_path, ray_cluster)
    yield provider
    provider.close()


@pytest.fixture
def container_provider(tmp_path: Path, ray_cluster, podman_env, python_image) -> Iterator[Provider]:
    conf = Path(podman_env["CONTAINERS_CONF"])
    provider = Provider(tmp_path, ray_cluster, jobs_in="container", containers_conf=conf)
    yield provider
    provider.close()


def container_spec(image: str, code: str, *, gpu_count: int, **fields) -> ContainerJobSpec:
    limits = ContainerLimits(max_seconds=60, max_output_bytes=1 << 20, max_memory_bytes=256 << 20)
    return ContainerJobSpec(image=image, command=["python3", "-c", code], gpu_count=gpu_count, limits=limits, **fields)


def worker_addresses(cluster) -> set[str]:
    import ray

    return {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"] and node["Resources"].get("GPU")}


def test_a_job_runs_on_one_node_with_exactly_the_gpus_it_asked_for(provider: Provider) -> None:
    spec = python_spec(REPORT_GPUS, outputs=["gpus.json"])
    provider.submit(1, spec, gpus=2)
    record = provider.wait_state(1)
    assert record.state == JobStatus.FINISHED and record.exit_code == 0, record

    status = provider.agent.public_status(record)
    assert status["runtime"] == "ray"
    placement = status["placement"]
    assert placement["address"] in worker_addresses(provider.cluster)  # a worker, never the GPU-less head
    assert len(placement["gpus"]) == 2 and placement["node_id"]
    # The job saw the GPUs Ray gave it, and its output came back through the shared folder.
    paths = provider.agent.runner.paths(1)
    seen = json.loads((paths.work / "gpus.json").read_text())
    assert sorted(int(gpu) for gpu in seen.split(",")) == sorted(placement["gpus"])
    result = json.loads(paths.result.read_text())
    assert "outputs/gpus.json" in json.dumps(result)
    usage = json.loads(paths.usage.read_text())
    assert usage["complete"] is True and usage["job_id"] == 1


def test_the_cluster_refuses_what_it_cannot_place_and_runs_the_rest(provider: Provider) -> None:
    import ray

    # Work outside the market holds two GPUs on one node: the cluster has two left, on the other.
    @ray.remote(num_gpus=2, num_cpus=0)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.remote()  # type: ignore[attr-defined]
    try:
        ray.get(holder.ready.remote(), timeout=60)
        long_job = python_spec(REPORT_GPUS, env={"SLEEP": "6"})
        provider.submit(2, long_job, gpus=2)
        provider.wait_placed(2)
        # The agent's own pool has two GPUs left (it sells four), the cluster none: refused, 503.
        with pytest.raises(AgentError) as refused:
            provider.submit(3, python_spec(REPORT_GPUS), gpus=2)
        assert refused.value.status == 503 and refused.value.code == "gpus_busy"
        assert "at most 0 GPUs free on one node" in refused.value.detail
        assert provider.store.get(3) is None  # nothing stored: the client sends it again later
    finally:
        ray.kill(holder)
    assert provider.wait_state(2).exit_code == 0
    # Now the cluster has room, and the same spec runs.
    provider.submit(3, python_spec(REPORT_GPUS), gpus=2)
    assert provider.wait_state(3).exit_code == 0


def test_a_restarted_agent_adopts_its_running_job_by_submission_id(provider: Provider) -> None:
    spec = python_spec(REPORT_GPUS, env={"SLEEP": "5"})
    provider.submit(4, spec, gpus=1)
    provider.wait_placed(4)
    provider.restart()
    record = provider.store.get(4)
    assert record is not None and record.state == JobStatus.RUNNING  # followed again, not lost
    record = provider.wait_state(4)
    assert record.state == JobStatus.FINISHED and record.exit_code == 0
    # The job ran once: the cluster has one Ray job under its submission id.
    runner = provider.agent.runner
    assert [job.submission_id for job in runner.client.list_jobs()].count(runner.submission_id(4)) == 1


def test_a_stop_reaches_the_job_on_its_node(provider: Provider) -> None:
    spec = python_spec(REPORT_GPUS, env={"SLEEP": "60"})
    provider.submit(5, spec, gpus=1)
    provider.wait_placed(5)
    provider.agent.close(stop_jobs=True, timeout_s=60)
    record = provider.store.get(5)
    assert record is not None and record.state == JobStatus.FINISHED, record
    assert record.stop_reason == "stopped" and record.exit_code is None


def test_the_paid_time_ends_a_job_on_its_node(provider: Provider) -> None:
    spec = python_spec(REPORT_GPUS, env={"SLEEP": "60"}, max_seconds=3)
    provider.submit(6, spec, gpus=1)
    record = provider.wait_state(6)
    assert record.state == JobStatus.FINISHED and record.stop_reason == "timeout"


def test_a_node_that_dies_under_a_job_ends_it_lost(tmp_path: Path, doomed_ray_cluster) -> None:
    provider = Provider(tmp_path, doomed_ray_cluster)
    try:
        spec = python_spec(REPORT_GPUS, env={"SLEEP": "120"})
        provider.submit(7, spec, gpus=2)
        placement = provider.wait_placed(7)
        doomed_ray_cluster.kill_worker(doomed_ray_cluster.worker_node_ids().index(placement["node_id"]))
        # A node that dies takes its processes with it; on this machine they stay, so end them as
        # a dying node would: the entrypoint that would write the job's ending, and the job.
        os.kill(placement["entrypoint_pid"], signal.SIGKILL)
        os.killpg(placement["pid"], signal.SIGKILL)
        record = provider.wait_state(7, timeout_s=180)
        assert record.state == JobStatus.LOST
        assert "ended without the job's ending" in (record.detail or ""), record.detail
    finally:
        provider.close()


# The container's program: what it can see and do inside its sandbox.
SANDBOX = (
    "import json, os\n"
    "try:\n"
    "    open('/escape', 'w')\n"
    "    root = 'writable'\n"
    "except OSError:\n"
    "    root = 'read-only'\n"
    "seen = {'root': root, 'uid': os.getuid(), 'cwd': os.getcwd(), 'debian': open('/etc/debian_version').read()}\n"
    "json.dump(seen, open('seen.json', 'w'))\n"
)


def test_a_container_job_runs_in_its_image_on_a_node(container_provider: Provider, python_image: str) -> None:
    provider = container_provider
    offer = provider.agent.runner.offer()
    assert offer["networks"] == ["none"] and offer["max_image_bytes"] > 0  # what a client may ask, as on one machine
    spec = container_spec(python_image, SANDBOX, gpu_count=1, outputs=["seen.json"])
    provider.submit(11, spec, gpus=1)
    record = provider.wait_state(11)
    assert record.state == JobStatus.FINISHED and record.exit_code == 0, record

    status = provider.agent.public_status(record)
    assert status["runtime"] == "ray" and status["placement"]["address"] in worker_addresses(provider.cluster)
    # It ran in its image's sandbox: read-only root, not root, in /work, which came back here.
    seen = json.loads((provider.agent.runner.paths(11).work / "seen.json").read_text())
    assert seen["root"] == "read-only" and seen["uid"] != 0 and seen["cwd"] == "/work", seen
    assert seen["debian"].startswith("12"), seen  # the image's Debian (bookworm), whatever the host runs
    assert "outputs/seen.json" in provider.agent.runner.paths(11).result.read_text()


def test_an_image_no_node_can_get_ends_the_job_before_it_is_submitted(
    container_provider: Provider, python_image: str
) -> None:
    provider = container_provider
    missing = python_image.split("@")[0] + "@sha256:" + "ab" * 32  # a local name: nowhere to pull it from
    provider.submit(12, container_spec(missing, "print(1)", gpu_count=1), gpus=1)
    record = provider.wait_state(12)
    status = provider.agent.public_status(record)
    assert status["state"] == "lost" and status["started_at"] is None, status
    assert status["reason"] in ("image_not_found", "image_unavailable"), status  # what the oracles check
    assert "node " in (record.detail or "")  # which node could not get it
    assert provider.agent.runner.details(12) is None  # never submitted to Ray
    assert provider.agent.gpus.free == provider.agent.gpus.size


def test_a_cluster_running_containers_refuses_a_process_spec(container_provider: Provider) -> None:
    with pytest.raises(AgentError) as refused:
        container_provider.submit(13, python_spec(REPORT_GPUS), gpus=1)
    assert refused.value.status == 422 and "version 1 spec" in refused.value.detail
