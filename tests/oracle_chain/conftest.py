"""One market on the embedded chain (default params: the 2-of-3 test committee), three oracles
(each its DecisionStore, OracleSigner, live OracleAPI on loopback, ChainSubmitter with its own
funded account) and provider agents serving real HTTP (ProviderServer) on cpu-dev.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from web3 import Web3

from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.events import ProviderRegistered
from gpumarket.chain.keys import ServiceKey, test_account, test_oracle
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.measure.provers import TileProver, make_prover
from gpumarket.oracle.api import OracleAPI
from gpumarket.oracle.chain_submitter import ChainSubmitter
from gpumarket.oracle.hardware import HardwareConfig, HardwareVerifier
from gpumarket.oracle.peers import PeerClient
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.oracle.sync import CommitteeSync
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.jobsource import MarketJobSource
from gpumarket.provider.runner import Runner, RunnerConfig
from gpumarket.provider.store import Store

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
PRICE = 10**12


@dataclass
class Oracle:
    key: ServiceKey
    store: DecisionStore
    signer: OracleSigner
    api: OracleAPI
    submitter: ChainSubmitter
    hv: HardwareVerifier | None = None


@dataclass
class World:
    w3: Web3
    deployment: MarketDeployment
    deployer: ServiceKey
    root: Path
    oracles: list[Oracle] = field(default_factory=list)
    servers: list[ProviderServer] = field(default_factory=list)
    registrations: dict[str, ProviderRegistered] = field(default_factory=dict)

    def market(self, key: ServiceKey | None = None) -> Market:
        return self.deployment.market_at(self.w3, signer=key)

    def start_agent(self, key: ServiceKey, prover: TileProver) -> str:
        """A real agent for ``key`` serving HTTP on loopback; returns its endpoint."""
        name = f"{key.address[-6:]}-{len(self.servers)}"
        runner = Runner(RunnerConfig(root=self.root / f"jobs-{name}", meter_interval_s=0.05, meter_gpus=False))
        config = AgentConfig(address=key.address, chain_id=self.deployment.chain_id, market=self.deployment.market)
        agent = ProviderAgent(
            config, Store(self.root / f"agent-{name}.sqlite"), runner, MarketJobSource(self.market()), prover
        )
        server = ProviderServer(agent, "127.0.0.1", 0, request_timeout_s=10.0).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    def start_provider(self, key: ServiceKey, prover: TileProver, stake: int) -> str:
        """A real agent serving HTTP, registered on chain with that endpoint, staked."""
        endpoint = self.start_agent(key, prover)
        market = self.market(key)
        market.stake_token.mint(key.address, 10**24)
        market.stake_token.approve(market.address)
        market.stake(stake)
        result = market.register(CPU_DEV, 1, PRICE, endpoint)
        self.registrations[key.address] = result.event(ProviderRegistered)
        return key.address


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("oracle-chain")
    w3 = connect(EMBEDDED)
    deployer = test_account(0)
    deployment = deploy_market_web3(w3, deployer, load_params(PARAMS), artifacts=load_artifacts())
    world = World(w3, deployment, deployer, root)
    domain = world.market().domain
    try:
        for i in range(3):
            key = test_oracle(i)
            store = DecisionStore.open(root / f"oracle{i}.db", domain, key.address)
            CommitteeSync(store, world.market()).load_current()
            signer = OracleSigner(store, key)
            api = OracleAPI(store, signer).start()
            submitter = ChainSubmitter(world.market(test_account(5 + i)), store)
            world.oracles.append(Oracle(key, store, signer, api, submitter))
        for i, oracle in enumerate(world.oracles):
            peers = [PeerClient(o.api.url, domain) for j, o in enumerate(world.oracles) if j != i]
            oracle.hv = HardwareVerifier(
                oracle.store,
                oracle.signer,
                world.market(),
                peers,
                oracle.submitter,
                config=HardwareConfig(fallback_delay_s=30.0),
            )
        yield world
    finally:
        for server in world.servers:
            server.stop()
        for oracle in world.oracles:
            oracle.api.stop()
            oracle.store.close()


@pytest.fixture(scope="session")
def honest_prover() -> TileProver:
    return make_prover("numpy")
