"""One anvil per test module, a market deployed on it, its record in a file, and a way to
run `gpumarket ...` in process with click's CliRunner.

Each command connects to anvil by URL, as a user's command does (the embedded chain cannot
be shared across commands: each `--rpc embedded` is a fresh chain). Test account 0 deploys
and owns the market; each test takes its own other test accounts (1 .. 11).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from web3 import Web3

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, AnvilNode, find_anvil
from gpumarket.chain.connection import connect, latest_timestamp
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import DeployParams, load_params
from gpumarket.cli import main
from gpumarket.testing.committee import Committee, hardware_report

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
COMMITTEE = Committee.of_size(3, threshold=2)


@dataclass
class CliWorld:
    node: AnvilNode
    w3: Web3
    deployment: MarketDeployment
    deployment_path: Path
    params: DeployParams
    folder: Path

    def invoke(
        self, *args: str, key: int | None = None, env: dict[str, str] | None = None, connect_flags: bool = True
    ) -> Result:
        """`gpumarket <args>` plus --rpc/--deployment (and --key test-account:<key>)."""
        flags = ["--rpc", self.node.url, "--deployment", str(self.deployment_path)] if connect_flags else []
        if key is not None:
            flags += ["--key", f"test-account:{key}"]
        return CliRunner(mix_stderr=False).invoke(main, [*args, *flags], env={"GPUMARKET_CONFIG": "", **(env or {})})

    def market(self, account: int | None = None) -> Market:
        signer = None if account is None else test_account(account)
        return self.deployment.market_at(self.w3, signer=signer)

    def verify(self, account: int) -> None:
        owner = self.market(0)
        provider = test_account(account).address
        report = hardware_report(
            provider, 1, 1, owner.class_floor(1), latest_timestamp(self.w3) + 86_400, epoch=owner.epoch()
        )
        owner.submit_hardware_report(report, COMMITTEE.sign(owner.domain, report))

    def mint_stake(self, account: int, amount: int) -> None:
        self.market(0).stake_token.mint(test_account(account).address, amount)


def ok(result: Result) -> Any:
    """The JSON document of a successful --json command."""
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stdout}{result.stderr}"
    return json.loads(result.stdout)


def refused(result: Result, code: str) -> dict[str, Any]:
    """A --json command that must exit 1 with error `code`; its error document."""
    assert result.exit_code == 1, f"exit {result.exit_code}: {result.stdout}{result.stderr}"
    document = json.loads(result.stdout)
    assert document["error"] == code, document
    assert document["hint"], "a refusal says what to do"
    return document


def key(account: int) -> ServiceKey:
    return test_account(account)


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory) -> Iterator[CliWorld]:
    binary = find_anvil()
    if binary is None:
        pytest.skip(f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE})")
    folder = tmp_path_factory.mktemp("cli-world")
    node = AnvilNode(binary, log_path=folder / "anvil.log").start()
    try:
        w3 = connect(node.url)
        params = load_params(PARAMS)
        deployment = deploy_market_web3(w3, test_account(0), params)
        path = deployment.write(folder / "deployment.json")
        yield CliWorld(node, w3, deployment, path, params, folder)
    finally:
        node.stop()
