"""The provider agent with the container runtime, over real HTTP and real Podman: a version 2 spec
runs in a container and its result is served; specs this agent cannot run are refused and
recorded; an image that cannot be had is reported lost with its reason; a restarted agent adopts
its running container and removes the ones it no longer owns (as a real process killed with
SIGKILL: tests/provider/test_cli.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpumarket.agentapi.result import ResultBundle
from gpumarket.agentapi.spec import ContainerJobSpec, ContainerLimits
from gpumarket.containers.engine import PodmanEngine
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent, PullPolicy
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.jobdir import RunnerConfig
from gpumarket.provider.runtime import RuntimeSettings, RuntimeUnavailable, container_owner, make_runtime
from gpumarket.provider.store import Store

from .conftest import Served
from .support import CHAIN_ID, MARKET, Http, MemoryJobSource, python_spec
from .test_api import expect, put_spec, result_auth, wait_finished

JOB = 7
MISSING_DIGEST = "sha256:" + "ab" * 32
DEFAULT_PULLS = PullPolicy()


def container_spec(image: str, code: str, *, gpu_count: int = 1, max_seconds: int = 30, **fields) -> ContainerJobSpec:
    limits = ContainerLimits(max_seconds=max_seconds, max_output_bytes=1 << 20, max_memory_bytes=256 << 20)
    return ContainerJobSpec(image=image, command=["python3", "-c", code], gpu_count=gpu_count, limits=limits, **fields)


class ContainerAgents:
    """Starts agents on one store and job folder, as a provider's restarts would."""

    def __init__(self, root: Path, provider: str, conf: str) -> None:
        self.root, self.provider = root, provider
        self.settings = RuntimeSettings(kind="container", containers_conf=Path(conf))
        self.jobs = MemoryJobSource()
        self.running: list[tuple[ProviderAgent, ProviderServer, Store]] = []

    def start(self, pull_policy: PullPolicy = DEFAULT_PULLS) -> Served:
        store = Store(self.root / "agent.sqlite")
        runner = make_runtime(
            self.settings,
            RunnerConfig(root=self.root / "jobs", meter_interval_s=0.1, meter_gpus=False, kill_grace_s=1.0),
            self.provider,
        )
        agent = ProviderAgent(
            AgentConfig(address=self.provider, chain_id=CHAIN_ID, market=MARKET),
            store,
            runner,
            self.jobs,
            make_prover("numpy"),
            pull_policy=pull_policy,
        )
        agent.recover()
        server = ProviderServer(agent, "127.0.0.1", 0, request_timeout_s=5.0).start()
        self.running.append((agent, server, store))
        return Served(agent, server, Http("127.0.0.1", server.port), store, runner, self.jobs)

    def close(self) -> None:
        for agent, server, _store in self.running:
            server.stop()
            agent.close(stop_jobs=True, timeout_s=20)
        engine = PodmanEngine(containers_conf=self.settings.containers_conf)
        owner = container_owner(self.provider, self.root / "jobs")
        for container in engine.list(f"gpumarket.owner={owner}"):
            engine.remove(container.id)


@pytest.fixture
def agents(tmp_path, provider_account, podman_env) -> Iterator[ContainerAgents]:
    made = ContainerAgents(tmp_path, provider_account.address, podman_env["CONTAINERS_CONF"])
    yield made
    made.close()


def on_chain(served: Served, client, provider, spec, job_id: int = JOB, gpu_count: int = 1) -> None:
    served.jobs.put(
        job_id, client=client.address, provider=provider.address, spec_hash=spec.hash(), gpu_count=gpu_count
    )


def test_the_container_runtime_needs_a_podman_that_answers(tmp_path):
    settings = RuntimeSettings(kind="container", podman=str(tmp_path / "no-podman"))
    with pytest.raises(RuntimeUnavailable, match="the container runtime needs podman, which did not answer: "):
        make_runtime(settings, RunnerConfig(root=tmp_path / "jobs"), "0x" + "11" * 20)


def test_a_container_job_runs_and_its_result_is_served(agents, python_image, client_account, provider_account):
    served = agents.start()
    health = served.http.request("GET", "/health").json()
    assert health["runtime"] == "container" and health["networks"] == ["none"] and health["max_image_bytes"] > 0
    spec = container_spec(
        python_image,
        "import os; open('answer.txt', 'w').write(str(os.getuid())); print('done')",
        outputs=["answer.txt"],
    )
    on_chain(served, client_account, provider_account, spec)

    response = put_spec(served, client_account, spec)
    assert response.status == 202, response.body
    assert response.json()["job"]["runtime"] == "container"
    status = wait_finished(served, timeout_s=60)
    assert status["state"] == "finished" and status["exit_code"] == 0, status
    assert status["runtime"] == "container" and status["image"] == python_image and status["pulling"] is False

    raw = served.http.request("GET", f"/jobs/{JOB}/result", headers=result_auth(client_account)).body
    bundle = ResultBundle.parse(raw)
    assert bundle.result_hash.hex() == status["result_hash"][2:]
    assert bundle.contents["outputs/answer.txt"] == b"65534"  # the job ran as the unprivileged user
    assert bundle.contents["stdout"] == b"done\n"


def test_specs_this_agent_cannot_run_are_refused_and_recorded(agents, python_image, client_account, provider_account):
    served = agents.start()
    process_spec = python_spec("print(1)")
    on_chain(served, client_account, provider_account, process_spec, job_id=1)
    detail = expect(put_spec(served, client_account, process_spec, job_id=1), 422, "spec_not_runnable")
    assert "version 1 spec" in detail
    status = served.http.request("GET", "/jobs/1/status").json()
    assert (status["state"], status["reason"], status["started_at"]) == ("lost", "spec_not_runnable", None)

    two_gpus = container_spec(python_image, "print(1)", gpu_count=2)
    on_chain(served, client_account, provider_account, two_gpus, job_id=2, gpu_count=1)
    detail = expect(put_spec(served, client_account, two_gpus, job_id=2), 422, "spec_not_runnable")
    assert "asks for 2 GPUs, the job on chain has gpu_count 1" in detail

    networked = container_spec(python_image, "print(1)", network="bridge")
    on_chain(served, client_account, provider_account, networked, job_id=3)
    detail = expect(put_spec(served, client_account, networked, job_id=3), 422, "spec_not_runnable")
    assert "bridge" in detail and served.http.healthy()


def test_an_image_that_cannot_be_had_is_lost_with_its_reason(agents, python_image, client_account, provider_account):
    served = agents.start(PullPolicy(first_retry_s=0.2, max_retry_s=0.2, give_up_s=1.0))
    name = python_image.split("@")[0]
    spec = container_spec(f"{name}@{MISSING_DIGEST}", "print(1)")  # a local name: nowhere to pull it from
    on_chain(served, client_account, provider_account, spec)
    assert put_spec(served, client_account, spec).status == 202
    status = wait_finished(served, timeout_s=60)
    assert status["state"] == "lost" and status["started_at"] is None, status
    assert status["reason"] in ("image_not_found", "image_unavailable") and MISSING_DIGEST in status["image"]
    assert served.agent.gpus.free == served.agent.gpus.size  # nothing held for it


def test_a_pull_that_hangs_ends_with_the_attempt_not_the_pull_timeout(
    agents, python_image, client_account, provider_account
):
    # A registry that accepts connections and never answers: the pull would hang for the whole
    # pull timeout (ten minutes), past the job's paid time, were it not bounded by the attempt.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        served = agents.start(PullPolicy(first_retry_s=0.2, max_retry_s=0.2, give_up_s=3.0))
        spec = container_spec(f"127.0.0.1:{silent.getsockname()[1]}/silent@{MISSING_DIGEST}", "print(1)")
        on_chain(served, client_account, provider_account, spec)
        began = time.monotonic()
        assert put_spec(served, client_account, spec).status == 202
        status = wait_finished(served, timeout_s=60)
    assert (status["state"], status["reason"], status["started_at"]) == ("lost", "image_unavailable", None), status
    assert time.monotonic() - began < 30
