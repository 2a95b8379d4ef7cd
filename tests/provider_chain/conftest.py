"""Fixtures of the provider's chain-side tests: a market (on the embedded py-evm chain, or on
anvil for the process test) with a
ready provider (registered for cpu-dev with 2 GPUs, verified by a committee-signed
HardwareReport, staked), a ready competitor, and a client; each test runs inside an EVM
snapshot, so every test starts from the same chain.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3

from gpumarket.agentapi.spec import JobSpec, Limits
from gpumarket.chain.artifacts import Artifacts, load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect, latest_timestamp
from gpumarket.chain.events import JobCreated
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import DeployParams, load_params
from gpumarket.provider.store import Store
from gpumarket.testing.committee import Committee, hardware_report

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS = REPO_ROOT / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
OTHER_CLASS = 2
PRICE = 10**15
PROVIDER_GPUS = 2
HOUR = 3600
PROVIDER_ENDPOINT = "http://127.0.0.1:8700"
FUNDING = 10**24


def python_spec(code: str) -> JobSpec:
    return JobSpec(command=[sys.executable, "-c", code], limits=Limits(max_seconds=20, max_output_bytes=1 << 20))


@dataclass
class Chain:
    w3: Web3
    artifacts: Artifacts
    params: DeployParams
    deployment: MarketDeployment
    committee: Committee
    deployer: ServiceKey
    provider: ServiceKey
    competitor: ServiceKey
    client: ServiceKey

    def market(self, key: ServiceKey | None = None) -> Market:
        return self.deployment.market_at(self.w3, signer=key, artifacts=self.artifacts)

    def now(self) -> int:
        return latest_timestamp(self.w3)

    def create_job(
        self,
        spec_hash: bytes = b"\x5e" * 32,
        *,
        gpu_class: int = CPU_DEV,
        gpu_count: int = 1,
        max_price: int = 2 * PRICE,
        max_duration: int = HOUR,
        provider: str | None = None,
        accept_within: int = HOUR,
    ) -> int:
        result = self.market(self.client).create_job(
            gpu_class, gpu_count, max_price, max_duration, spec_hash, self.now() + accept_within, provider=provider
        )
        return result.event(JobCreated).job_id

    def ready_provider(self, key: ServiceKey, gpus: int, endpoint: str) -> None:
        market = self.market(key)
        market.register(CPU_DEV, gpus, PRICE, endpoint)
        report = hardware_report(
            key.address, CPU_DEV, gpus, market.class_floor(CPU_DEV) * gpus, self.now() + 24 * HOUR, epoch=market.epoch()
        )
        market.submit_hardware_report(report, self.committee.sign(market.domain, report))
        market.stake(self.params.parameters.min_stake + 100 * 10**18)


def build_chain(w3: Web3, provider_gpus: int = PROVIDER_GPUS) -> Chain:
    """Deploys a market on `w3` and readies the provider (with `provider_gpus` GPUs), the
    competitor and the client."""
    artifacts = load_artifacts()
    params = load_params(PARAMS)
    deployer, provider, competitor, client = (test_account(i) for i in (0, 2, 3, 4))
    deployment = deploy_market_web3(w3, deployer, params, artifacts=artifacts, deploy_mock_tokens=True)
    chain = Chain(
        w3, artifacts, params, deployment, Committee.of_size(3, threshold=2), deployer, provider, competitor, client
    )
    for key in (provider, competitor, client):
        market = chain.market(key)
        for token in (market.stake_token, market.payment_token):
            token.mint(key.address, FUNDING)
            token.approve(market.address)
    chain.ready_provider(provider, provider_gpus, PROVIDER_ENDPOINT)
    chain.ready_provider(competitor, 1, "http://127.0.0.1:8701")
    return chain


@pytest.fixture(scope="module")
def module_chain() -> Chain:
    return build_chain(connect(EMBEDDED))


@pytest.fixture
def chain(module_chain: Chain) -> Iterator[Chain]:
    snapshot = module_chain.w3.provider.make_request("evm_snapshot", [])["result"]
    yield module_chain
    module_chain.w3.provider.make_request("evm_revert", [snapshot])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "agent.sqlite")
    yield store
    store.close()
