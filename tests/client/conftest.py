"""One market on the embedded chain, shared by the client's tests (session scope: deploying
takes seconds).

Providers, all registered on chain (test accounts):
- best: cpu-dev, PRICE, verified with 3x the class floor, staked; its agent really serves
  HTTP (ProviderServer over MarketJobSource) on an ephemeral port that is its endpoint.
- runner_up: cpu-dev, PRICE, verified with 2x the floor, staked (ranks after best).
- unverified: cpu-dev, PRICE / 2, staked, never verified.
- jailed: cpu-dev, PRICE / 2, verified, staked, jailed after one FAILED settlement
  (jail_after_failures set to 1 by the owner).
- expensive: cpu-dev, 100 x PRICE, verified, staked.
- poor: cpu-dev, PRICE / 2, verified, only MIN_STAKE staked (no room for collateral).
- other_class: class 2 at PRICE / 2, verified, staked.
Accept is done by the test with the provider's key: the agent's chain watcher is not this
package's concern. Every provider has one GPU, which a running job holds: the jobs a test
accepted and left running are settled after it (`release_gpus`), so the next test finds the
providers free.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from web3 import Web3

from gpumarket.agentapi.spec import JobSpec, Limits
from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect, latest_timestamp
from gpumarket.chain.events import JobCreated
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.models import JobState
from gpumarket.chain.params import load_params
from gpumarket.client.jobs import JobClient
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.jobsource import MarketJobSource
from gpumarket.provider.runner import Runner, RunnerConfig
from gpumarket.provider.store import Store
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import Committee, hardware_report, job_report

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
OTHER_CLASS = 2
PRICE = 10**12
DURATION = 600
COMMITTEE = Committee.of_size(3, threshold=2)


def python_spec(code: str, outputs: list[str] | None = None) -> JobSpec:
    return JobSpec(
        command=[sys.executable, "-c", code],
        limits=Limits(max_seconds=20, max_output_bytes=1 << 20),
        outputs=outputs or [],
    )


@dataclass
class World:
    w3: Web3
    deployment: MarketDeployment
    deployer: ServiceKey
    client: ServiceKey
    other: ServiceKey
    providers: dict[str, ServiceKey]
    endpoint: str
    agent: ProviderAgent
    min_stake: int
    markets: dict[str, Market] = field(default_factory=dict)
    accepted: dict[int, str] = field(default_factory=dict)  # job id -> provider address

    def market(self, key: ServiceKey) -> Market:
        if key.address not in self.markets:
            self.markets[key.address] = self.deployment.market_at(self.w3, signer=key)
        return self.markets[key.address]

    def job_client(self, key: ServiceKey | None = None) -> JobClient:
        key = key or self.client
        return JobClient(self.market(key), key, poll_interval_s=0.05, from_block=self.deployment.block)

    def accept(self, name: str, job_id: int) -> None:
        self.market(self.providers[name]).accept_job(job_id)
        self.accepted[job_id] = self.providers[name].address

    def settle_running(self) -> None:
        """Settle (COMPLETED) the accepted jobs still running: their GPUs are free again."""
        for job_id, provider in self.accepted.items():
            if self.market(self.deployer).get_job(job_id).state == JobState.RUNNING:
                self.settle(job_id, provider, Outcome.COMPLETED)
        self.accepted.clear()

    def settle(self, job_id: int, provider: str, outcome: Outcome, result_hash: bytes = b"\x11" * 32) -> None:
        market = self.market(self.deployer)
        report = job_report(job_id, provider, outcome, gpu_seconds=1, epoch=market.epoch(), result_hash=result_hash)
        market.settle(report, COMMITTEE.sign(market.domain, report))


def _verify(market: Market, w3: Web3, key: ServiceKey, gpu_class: int, throughput: int) -> None:
    report = hardware_report(key.address, gpu_class, 1, throughput, latest_timestamp(w3) + 86_400, epoch=market.epoch())
    market.submit_hardware_report(report, COMMITTEE.sign(market.domain, report))


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("client-world")
    w3 = connect(EMBEDDED)
    params = load_params(PARAMS)
    deployer = test_account(0)
    deployment = deploy_market_web3(w3, deployer, params, artifacts=load_artifacts())
    names = ["best", "runner_up", "unverified", "jailed", "expensive", "poor", "other_class"]
    providers = {name: test_account(i + 1) for i, name in enumerate(names)}
    client, other = test_account(9), test_account(10)
    min_stake = params.parameters.min_stake

    # The best provider's agent, serving for real before it registers its endpoint.
    best = providers["best"]
    owner_market = deployment.market_at(w3, signer=deployer)
    store = Store(root / "agent.sqlite")
    runner = Runner(RunnerConfig(root=root / "jobs", meter_interval_s=0.05, meter_gpus=False, kill_grace_s=0.5))
    config = AgentConfig(address=best.address, chain_id=deployment.chain_id, market=deployment.market)
    agent = ProviderAgent(config, store, runner, MarketJobSource(deployment.market_at(w3)), make_prover("numpy"))
    server = ProviderServer(agent, "127.0.0.1", 0, request_timeout_s=5.0).start()
    endpoint = f"http://127.0.0.1:{server.port}"
    world = World(w3, deployment, deployer, client, other, providers, endpoint, agent, min_stake)
    try:
        floor = owner_market.class_floor(CPU_DEV)
        setup = {
            # name: (class, price, throughput or None = unverified, stake)
            "best": (CPU_DEV, PRICE, 3 * floor, min_stake + 10**21),
            "runner_up": (CPU_DEV, PRICE, 2 * floor, min_stake + 10**21),
            "unverified": (CPU_DEV, PRICE // 2, None, min_stake + 10**21),
            "jailed": (CPU_DEV, PRICE // 2, floor, min_stake + 10**21),
            "expensive": (CPU_DEV, 100 * PRICE, floor, min_stake + 10**21),
            "poor": (CPU_DEV, PRICE // 2, floor, min_stake),
            "other_class": (OTHER_CLASS, PRICE // 2, owner_market.class_floor(OTHER_CLASS), min_stake + 10**21),
        }
        for name, (gpu_class, price, throughput, stake) in setup.items():
            market = world.market(providers[name])
            market.stake_token.mint(providers[name].address, 10**24)
            market.stake_token.approve(market.address)
            url = endpoint if name == "best" else f"http://127.0.0.1:9/{name}"  # port 9: nothing listens
            market.register(gpu_class, 1, price, url)
            if throughput is not None:
                _verify(market, w3, providers[name], gpu_class, throughput)
            market.stake(stake)
        for key in (client, other):
            world.market(key).payment_token.mint(key.address, 10**24)

        # Jail one provider for real: one FAILED settlement with jail_after_failures = 1.
        owner_market.set_parameter("jail_after_failures", 1)
        other_market = world.market(other)
        other_market.payment_token.approve(other_market.address)
        deadline = latest_timestamp(w3) + 600
        job_id = (
            other_market.create_job(CPU_DEV, 1, PRICE, 60, b"\x01" * 32, deadline, provider=providers["jailed"].address)
            .event(JobCreated)
            .job_id
        )
        world.accept("jailed", job_id)
        world.settle(job_id, providers["jailed"].address, Outcome.FAILED, result_hash=b"\x00" * 32)
        assert owner_market.providers(providers["jailed"].address).jailed
        world.accepted.clear()
        yield world
    finally:
        server.stop()
        agent.close(stop_jobs=True, timeout_s=10)
        store.close()


@pytest.fixture(autouse=True)
def release_gpus(world: World) -> Iterator[None]:
    yield
    world.settle_running()
