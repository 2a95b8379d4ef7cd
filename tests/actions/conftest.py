"""One market on the embedded chain for the action library's tests (module scope: each test
file gets its own chain, so governance changes never leak into the provider tests).

Every test takes fresh accounts (`world.new_key()`: a random key funded with ether only), so
the tests do not depend on one another's order. Hardware verification and settlement are
signed by the deployment's 2-of-3 test committee, as the oracles would.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from gpumarket.actions import open_market
from gpumarket.agentapi.spec import JobSpec, Limits
from gpumarket.chain.connection import EMBEDDED, connect, fund, latest_timestamp
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import DeployParams, load_params
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import Committee, hardware_report, job_report

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
PRICE = 10**12
COMMITTEE = Committee.of_size(3, threshold=2)
SPEC = JobSpec(command=[sys.executable, "-c", "print(1)"], limits=Limits(max_seconds=20, max_output_bytes=1 << 20))


@dataclass
class World:
    w3: Web3
    deployment: MarketDeployment
    params: DeployParams
    owner: ServiceKey
    _markets: dict[str, Market] = field(default_factory=dict)

    def new_key(self, ether: int = 10**20) -> ServiceKey:
        key = ServiceKey(os.urandom(32), "test-random")
        if ether:
            fund(self.w3, key.address, ether)
        return key

    def market(self, key: ServiceKey | None = None) -> Market:
        name = key.address if key else ""
        if name not in self._markets:
            self._markets[name] = open_market(self.w3, self.deployment, signer=key)
        return self._markets[name]

    @property
    def min_stake(self) -> int:
        return self.market().parameters()["min_stake"]

    def mint(self, key: ServiceKey, stake: int = 0, payment: int = 0) -> None:
        market = self.market(self.owner)
        if stake:
            market.stake_token.mint(key.address, stake)
        if payment:
            market.payment_token.mint(key.address, payment)

    def verify(self, key: ServiceKey, gpu_class: int = CPU_DEV, gpu_count: int = 1) -> None:
        market = self.market(self.owner)
        floor = market.class_floor(gpu_class)
        report = hardware_report(
            key.address,
            gpu_class,
            gpu_count,
            floor * gpu_count,
            latest_timestamp(self.w3) + 86_400,
            epoch=market.epoch(),
        )
        market.submit_hardware_report(report, COMMITTEE.sign(market.domain, report))

    def settle(self, job_id: int, provider: str, outcome: Outcome, gpu_seconds: int) -> None:
        market = self.market(self.owner)
        report = job_report(job_id, provider, outcome, gpu_seconds=gpu_seconds, epoch=market.epoch())
        market.settle(report, COMMITTEE.sign(market.domain, report))

    def ready_provider(
        self, stake: int | None = None, price: int = PRICE, endpoint: str = "http://127.0.0.1:9/provider"
    ) -> ServiceKey:
        """A registered, verified provider with `stake` (default min stake + 10**21) staked; its
        endpoint answers nothing (port 9) unless given."""
        key = self.new_key()
        stake = self.min_stake + 10**21 if stake is None else stake
        self.mint(key, stake=stake)
        market = self.market(key)
        market.register(CPU_DEV, 1, price, endpoint)
        self.verify(key)
        market.stake_token.approve(market.address, stake)
        market.stake(stake)
        return key


@pytest.fixture(scope="module")
def world() -> World:
    w3 = connect(EMBEDDED)
    params = load_params(PARAMS)
    owner = test_account(0)
    deployment = deploy_market_web3(w3, owner, params)
    return World(w3, deployment, params, owner)


class FakeAgent:
    """An HTTP server that answers GET /health with `health` (as a provider agent would): what
    the agent pre-checks see, without running jobs. Set `health` to change the answer."""

    def __init__(self) -> None:
        self.health: dict[str, Any] = {"status": "ok", "gpus": [], "free_gpus": 0}
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                found = self.path == "/health"
                body = json.dumps(agent.health if found else {"error": "not_found", "detail": ""}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def serve(self, provider: str, gpus: int, free: int) -> None:
        """Answer as `provider`'s agent with `gpus` GPUs (0: a CPU machine), `free` of them free."""
        self.health = {"status": "ok", "provider": provider, "gpus": list(range(gpus)), "free_gpus": free}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def fake_agent() -> Iterator[FakeAgent]:
    agent = FakeAgent()
    try:
        yield agent
    finally:
        agent.close()
