"""Fixtures of the web3 chain layer's tests (gpumarket.chain.{connection,market,follower,keys}).

Most tests run on the embedded py-evm chain: one deployment per module, and an EVM
snapshot around each test (`chain` reverts it), so every test starts from the same
deployed market. The follower's node tests use anvil (`anvil` fixture): a real JSON-RPC
node in its own process on a free port; they skip, saying why, where anvil is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.artifacts import Artifacts, load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect, latest_timestamp
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import DeployParams, load_params
from gpumarket.signing.eip712 import HardwareReport, JobReport, Outcome
from gpumarket.testing.committee import Committee, hardware_report, job_report

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = REPO_ROOT / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
TOKEN = 10**18
PRICE = 10**15  # payment-token units per GPU-second
FUNDING = 1_000_000 * TOKEN
SPEC_HASH = b"\x5e" * 32
HOUR = 3_600


@pytest.fixture(scope="session")
def artifacts() -> Artifacts:
    return load_artifacts()


@pytest.fixture(scope="session")
def params() -> DeployParams:
    return load_params(DEFAULT_PARAMS)


@dataclass
class Roles:
    deployer: ServiceKey
    provider: ServiceKey
    provider2: ServiceKey
    client: ServiceKey
    client2: ServiceKey
    keeper: ServiceKey
    attacker: ServiceKey


@pytest.fixture(scope="session")
def roles() -> Roles:
    return Roles(*(test_account(i) for i in (0, 2, 3, 4, 5, 6, 7)))


@pytest.fixture(scope="session")
def committee() -> Committee:
    """The committee of deploy/params/default.yaml: test oracles 0-2, 2-of-3."""
    return Committee.of_size(3, threshold=2)


@dataclass
class Kit:
    """One deployed market on one chain and the steps most tests repeat."""

    w3: Web3
    deployment: MarketDeployment
    artifacts: Artifacts
    roles: Roles
    committee: Committee
    params: DeployParams

    def market(self, signer: ServiceKey | None = None) -> Market:
        return self.deployment.market_at(self.w3, signer=signer, artifacts=self.artifacts)

    def now(self) -> int:
        return latest_timestamp(self.w3)

    def fund(self, *keys: ServiceKey) -> None:
        """Mints both tokens to each key and approves the market for all of it."""
        for key in keys:
            market = self.market(key)
            for token in (market.stake_token, market.payment_token):
                token.mint(key.address, FUNDING)
                token.approve(market.address)

    def hardware_report(
        self, key: ServiceKey, measured: int | None = None, valid_for: int = 24 * HOUR
    ) -> HardwareReport:
        market = self.market()
        record = market.providers(key.address)
        floor = market.class_floor(record.gpu_class) * record.gpu_count
        return hardware_report(
            key.address,
            record.gpu_class,
            record.gpu_count,
            floor if measured is None else measured,
            self.now() + valid_for,
            epoch=market.epoch(),
        )

    def ready_provider(self, key: ServiceKey, price: int = PRICE) -> Market:
        """Funded, registered, verified and staked (min_stake + 100 tokens)."""
        self.fund(key)
        market = self.market(key)
        market.register(CPU_DEV, 1, price, "http://127.0.0.1:8700")
        report = self.hardware_report(key)
        market.submit_hardware_report(report, self.committee.sign(market.domain, report))
        market.stake(self.params.parameters.min_stake + 100 * TOKEN)
        return market

    def create_job(self, key: ServiceKey, provider: str | None = None, max_duration: int = HOUR) -> int:
        from gpumarket.chain.events import JobCreated

        result = self.market(key).create_job(
            CPU_DEV, 1, 2 * PRICE, max_duration, SPEC_HASH, self.now() + HOUR, provider=provider
        )
        return result.event(JobCreated).job_id

    def job_report(self, job_id: int, outcome: Outcome = Outcome.COMPLETED, gpu_seconds: int = 0) -> JobReport:
        market = self.market()
        return job_report(job_id, market.get_job(job_id).provider, outcome, gpu_seconds, epoch=market.epoch())


def _deploy_kit(w3: Web3, artifacts: Artifacts, roles: Roles, committee: Committee, params: DeployParams) -> Kit:
    deployment = deploy_market_web3(w3, roles.deployer, params, artifacts=artifacts)
    return Kit(w3, deployment, artifacts, roles, committee, params)


@pytest.fixture(scope="module")
def module_kit(artifacts, roles, committee, params) -> Kit:
    """A market on a fresh embedded chain, shared by the module (use `kit`)."""
    return _deploy_kit(connect(EMBEDDED), artifacts, roles, committee, params)


@pytest.fixture
def kit(module_kit) -> Iterator[Kit]:
    """The module's market, reverted to its deployed state after the test."""
    w3 = module_kit.w3
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield module_kit
    w3.provider.make_request("evm_revert", [snapshot])


@pytest.fixture
def anvil(anvil_binary, tmp_path) -> Iterator[AnvilNode]:
    """A fresh anvil on a free port, keeping its state in tmp_path (so restart() resumes the
    same chain); stopped after the test."""
    node = AnvilNode(anvil_binary, state_path=tmp_path / "anvil-state.json", log_path=tmp_path / "anvil.log")
    node.start()
    yield node
    node.stop()


@pytest.fixture
def anvil_kit(anvil, artifacts, roles, committee, params) -> Kit:
    return _deploy_kit(connect(anvil.url), artifacts, roles, committee, params)
