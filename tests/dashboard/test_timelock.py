"""The market page's pending governance changes, on anvil with a market its Timelock owns (as on a
public network): a change scheduled by a proposer appears with when it becomes executable, turns
ready once its delay has passed, and disappears once an executor executes it; the live page's
version moves at each step. (A market its owner account changes directly: test_app.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, AnvilNode, find_anvil
from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import advance_time, connect
from gpumarket.chain.keys import test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import TimelockParams, load_params
from gpumarket.chain.timelock import MarketCall, Timelock
from gpumarket.dashboard import Dashboard, DashboardConfig, units
from gpumarket.dashboard.reads import ChainReads
from gpumarket.web.client import WebClient
from helpers.waiting import eventually

from .conftest import PARAMS, section

DELAY = 600
DEPLOYER, PROPOSER, EXECUTOR, GUARDIAN = 0, 8, 9, 10
PAGE_S = 30


@dataclass
class Governed:
    market: Market
    deployment: MarketDeployment
    dashboard: Dashboard
    client: WebClient

    def timelock(self, account: int) -> Timelock:
        assert self.deployment.timelock is not None
        return Timelock(self.market.w3, self.deployment.timelock, signer=test_account(account))

    def page(self) -> str:
        return self.client.request("GET", "/").body.decode()

    def pending(self) -> str:
        return section(self.page(), "pending")

    def version(self) -> str:
        return str(json.loads(self.client.request("GET", "/api/version").body)["version"])


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governed]:
    binary = find_anvil()  # anvil_binary is per test; one anvil serves this module
    if binary is None:
        pytest.skip(f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE})")
    folder = tmp_path_factory.mktemp("dashboard-timelock")
    node = AnvilNode(binary, log_path=folder / "anvil.log").start()
    try:
        roles = TimelockParams(
            min_delay=DELAY,
            proposers=[test_account(PROPOSER).address],
            executors=[test_account(EXECUTOR).address],
            guardians=[test_account(GUARDIAN).address],
        )
        params = load_params(PARAMS).model_copy(update={"timelock": roles})
        w3 = connect(node.url)
        deployment = deploy_market_web3(w3, test_account(DEPLOYER), params, artifacts=load_artifacts())
        config = DashboardConfig(rpc=node.url, deployment=deployment, port=0, confirmations=0, poll_interval_s=0.1)
        with Dashboard(config) as dashboard, WebClient(dashboard.url) as client:
            yield Governed(deployment.market_at(w3), deployment, dashboard, client)
    finally:
        node.stop()


def test_a_scheduled_change_shows_until_it_is_executed(governed: Governed) -> None:
    shown = governed.pending()
    assert governed.deployment.timelock is not None
    assert f'title="{governed.deployment.timelock}"' in shown and "at least 10 min" in shown
    assert "No pending changes." in shown and "not paused" in shown

    version = governed.version()
    operation = governed.timelock(PROPOSER).schedule(MarketCall("set_slash_bps", (5_000,)), governed.market)
    assert eventually(lambda: governed.version() != version, PAGE_S)  # what live.js asks: the page refreshes
    assert eventually(lambda: operation.hex_id in governed.pending(), PAGE_S)
    shown = governed.pending()
    assert "set_slash_bps(5000)" in shown and "No pending changes." not in shown
    # Executable at the scheduling block's time plus the delay, 10 min after the page's block (that one).
    assert f"{units.utc(operation.ready_at)} (in 10 min)" in shown and "state-waiting" in shown
    assert f'title="{operation.hex_id}">{operation.hex_id[:10]}…' in shown  # shortened, whole on hover

    advance_time(governed.market.w3, DELAY)
    assert eventually(lambda: "state-ready" in governed.pending(), PAGE_S)
    assert f"{units.utc(operation.ready_at)} (now)" in governed.pending()

    version = governed.version()
    governed.timelock(EXECUTOR).execute(operation, governed.market)
    assert eventually(lambda: governed.version() != version, PAGE_S)
    assert eventually(lambda: "No pending changes." in governed.pending(), PAGE_S)
    assert operation.hex_id not in governed.page() and "set_slash_bps(5000)" not in governed.page()
    assert governed.market.parameters()["slash_bps"] == 5_000


def test_the_timelock_is_read_once_per_block(governed: Governed) -> None:
    reads = ChainReads(governed.market, start_block=governed.deployment.block)
    owner, block = governed.market.owner(), governed.market.w3.eth.block_number
    state = reads.timelock(owner, block)
    assert state is not None and state.address == owner and state.minimum_delay == DELAY
    assert reads.timelock(owner, block) is state  # a second page of the same block reads nothing
