"""A running market on the embedded chain: three OracleServices (the 2-of-3 test committee of
deploy/params/default.yaml, each with its own funded sender), provider services started per
test (real agents on loopback, registered, staked and verified by the committee) and a client.

Timings are short (heartbeat 2 s, silence 8 s, fallback 3 s) so each job story takes seconds.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from web3 import Web3

from gpumarket.agentapi.spec import JobSpec
from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, AnvilNode, find_anvil
from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.keys import ServiceKey, test_account, test_oracle
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.models import Job
from gpumarket.chain.params import load_params
from gpumarket.client.jobs import JobClient
from gpumarket.demo.story import SHARED_MACHINE_CPU_DEV_FLOOR_GOPS
from gpumarket.measure.provers import TileProver
from gpumarket.oracle.challenge import ChallengeConfig
from gpumarket.oracle.hardware import HardwareConfig
from gpumarket.oracle.jobs import JobConfig
from gpumarket.oracle.service import OracleService, OracleServiceConfig
from gpumarket.provider.runtime import RuntimeSettings
from gpumarket.provider.service import ProviderService, ServiceConfig

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
PRICE = 10**12
STAKE = 10**22
# Heartbeats every 2 s from three oracles keep the one-challenge-at-a-time agent busy but not
# saturated (they take turns at its prover); silence is three unanswered tries over 8 s, and
# one try gives up after 3 s.
JOB_CONFIG = JobConfig(
    heartbeat_interval_s=2.0, poll_interval_s=0.3, silent_after_s=8.0, fallback_delay_s=3.0, resubmit_after_s=10.0
)
HARDWARE_CONFIG = HardwareConfig(
    fallback_delay_s=3.0,
    no_answer_retry_s=0.5,
    challenge=ChallengeConfig(request_timeout_s=3.0, turn_give_up_s=3.0),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval)


def busy_spec(seconds: float) -> JobSpec:
    """A real job: burns CPU for ``seconds`` and writes a file."""
    code = (
        f"import time\nt = time.time()\nn = 0\nwhile time.time() - t < {seconds}:\n    n += 1\n"
        "open('out.txt', 'w').write(str(n))\n"
    )
    return JobSpec.model_validate(
        {
            "version": 1,
            "command": [sys.executable, "-c", code],
            "env": {},
            "limits": {"max_seconds": 60, "max_output_bytes": 1 << 20, "max_memory_bytes": None},
            "outputs": ["out.txt"],
        }
    )


PROCESS = RuntimeSettings(kind="process")


@dataclass
class Market3:
    w3: Web3
    deployment: MarketDeployment
    root: Path
    oracles: list[OracleService] = field(default_factory=list)
    providers: list[ProviderService] = field(default_factory=list)
    job_config: JobConfig = JOB_CONFIG

    def market(self, key: ServiceKey | None = None) -> Market:
        return self.deployment.market_at(self.w3, signer=key)

    def oracle_config(self, i: int) -> OracleServiceConfig:
        return OracleServiceConfig(
            rpc=EMBEDDED,
            deployment=self.deployment,
            key=test_oracle(i),
            sender=test_account(5 + i),
            db_path=self.root / f"oracle{i}.sqlite",
            port=0,
            confirmations=0,
            poll_interval=0.1,
            tick_interval=0.1,
            hardware=HARDWARE_CONFIG,
            jobs=self.job_config,
        )

    def start_oracle(self, i: int) -> OracleService:
        """Starts oracle i (again, after a crash: same databases) and tells every oracle the peers."""
        service = OracleService(self.oracle_config(i), w3=self.w3).start()
        if i < len(self.oracles):
            self.oracles[i] = service
        else:
            self.oracles.append(service)
        urls = [o.url for o in self.oracles]
        for oracle in self.oracles:
            oracle.set_peers(urls)
        return service

    def start_provider(
        self, key: ServiceKey, prover: TileProver | None = None, runtime: RuntimeSettings = PROCESS
    ) -> ProviderService:
        """Stakes and registers ``key`` with a reserved port, starts its service (jobs run as
        ``runtime`` says), waits until verified."""
        market = self.market(key)
        port = free_port()
        market.stake_token.mint(key.address, 10 * STAKE)
        market.stake_token.approve(market.address)
        market.stake(STAKE)
        market.register(CPU_DEV, 1, PRICE, f"http://127.0.0.1:{port}")
        name = key.address[-6:]
        config = ServiceConfig(
            rpc=EMBEDDED,
            deployment=self.deployment,
            key=key,
            db_path=self.root / f"provider-{name}.sqlite",
            workdir=self.root / f"jobs-{name}",
            port=port,
            confirmations=0,
            poll_interval=0.1,
            meter_interval=0.1,
            runtime=runtime,
        )
        service = ProviderService(config, w3=self.w3, prover=prover).start()
        self.providers.append(service)
        wait_for(lambda: market.is_verified(key.address), 60, f"{key.address} verified")
        return service

    def client(self, key: ServiceKey) -> JobClient:
        market = self.market(key)
        market.payment_token.mint(key.address, 10**24)
        market.payment_token.approve(market.address)
        return JobClient(market, key)

    def run_job(self, client: JobClient, provider: str, spec: JobSpec) -> int:
        job_id = client.create_job(
            spec, gpu_class=CPU_DEV, gpu_count=1, max_price=PRICE, max_duration=120, provider=provider
        )
        client.wait_running(job_id, timeout_s=30)
        client.send_spec(job_id, spec)
        return job_id

    def wait_terminal(self, job_id: int, timeout_s: float = 60) -> Job:
        market = self.market()
        return wait_for(
            lambda: (job := market.get_job(job_id)).state.terminal and job, timeout_s, f"job {job_id} settled"
        )


def deploy_world(w3: Web3, root: Path) -> Market3:
    """Deploys the market on ``w3`` (cpu-dev floor lowered, see below); no service runs yet."""
    params = load_params(PARAMS)
    # cpu-dev at the shared-machine floor instead of 10: an honest agent on a machine loaded by other
    # test runs must not be slashed by these tests (they test the loop, not the floor).
    params = params.with_floor(CPU_DEV, SHARED_MACHINE_CPU_DEV_FLOOR_GOPS)
    return Market3(w3, deploy_market_web3(w3, test_account(0), params, artifacts=load_artifacts()), root)


@contextmanager
def running(world: Market3) -> Iterator[Market3]:
    """The three oracles started; every service stopped on the way out."""
    try:
        for i in range(3):
            world.start_oracle(i)
        yield world
    finally:
        for provider in world.providers:
            provider.close(stop_jobs=True)
        for oracle in world.oracles:
            oracle.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[Market3]:
    with running(deploy_world(connect(EMBEDDED), tmp_path_factory.mktemp("oracle-service"))) as world:
        yield world


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    """A fresh anvil keeping its state in tmp_path (restart() resumes the same chain)."""
    binary = find_anvil()
    if binary is None:
        reason = f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE}); npm is missing here"
        print(reason)
        pytest.skip(reason)
    node = AnvilNode(binary, state_path=tmp_path / "anvil-state.json", log_path=tmp_path / "anvil.log")
    node.start()
    yield node
    node.stop()
