"""Fixtures for the ape scripts, the walkthrough and the gas benchmark.

The scripts run as users run them (`ape run ...`, `python -m bench.gas`) in a subprocess
from the repository root; their own chain lives and dies with that process, except for
the role scripts' `script_world`, whose chain is an anvil every script connects to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from web3 import Web3

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, AnvilNode, find_anvil
from gpumarket.chain.connection import connect
from gpumarket.chain.keys import test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = REPO_ROOT / "deploy" / "params" / "default.yaml"
# Generous: a cold `ape run` on a busy 2-core machine takes a few seconds.
SUBPROCESS_TIMEOUT_S = 240


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def default_params_path() -> Path:
    return DEFAULT_PARAMS


@pytest.fixture
def params_data() -> dict[str, Any]:
    """deploy/params/default.yaml as plain data, for a test to change."""
    return yaml.safe_load(DEFAULT_PARAMS.read_text())


@pytest.fixture(scope="session")
def run_in_repo() -> Callable[..., subprocess.CompletedProcess]:
    """Runs a command of the venv (`ape`, or python with `-m`) from the repository root,
    with `env` added to the environment and `input` on stdin (empty: never a terminal)."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout_s: float = SUBPROCESS_TIMEOUT_S
    ) -> subprocess.CompletedProcess:
        executable = args[0]
        if executable == "ape":
            command = [str(Path(sys.executable).parent / "ape"), *args[1:]]
        elif executable == "python":
            command = [sys.executable, *args[1:]]
        else:
            raise ValueError(f"unexpected executable {executable}")
        return subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, **(env or {})},
            input=input if input is not None else "",
        )

    return run


@pytest.fixture
def write_params(tmp_path) -> Callable[[dict[str, Any]], Path]:
    """Writes params data to a YAML file in the test's temporary folder."""

    def write(data: dict[str, Any], name: str = "params.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write


# --------------------------------------------------------------------------- one chain for many scripts

FOUNDRY = "ethereum:local:foundry"


@dataclass
class ScriptWorld:
    """One anvil, a market deployed on it by `ape run deploy`, and a way to run the role
    scripts against it. Every `ape run` is its own process, so the scripts share a chain
    only through a node: ape's foundry provider connects to the running anvil named by
    APE_FOUNDRY_HOST instead of starting its own."""

    node: AnvilNode
    deployment_path: Path
    deployment: MarketDeployment
    w3: Web3
    run_in_repo: Callable[..., subprocess.CompletedProcess]

    def run(
        self,
        script: str,
        *args: str,
        account: int | None = None,
        deployment: Path | None = None,
        network: str = FOUNDRY,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """`ape run <script> <args> --network ... --deployment ... [--account TEST::i]`."""
        command = [
            "ape",
            "run",
            script,
            *args,
            "--network",
            network,
            "--deployment",
            str(deployment or self.deployment_path),
        ]
        if account is not None:
            command += ["--account", f"TEST::{account}"]
        return self.run_in_repo(*command, env={"APE_FOUNDRY_HOST": self.node.url}, input=input)

    @staticmethod
    def refusal(result: subprocess.CompletedProcess) -> str:
        """The one error line of a refused command: exit status 1, no traceback."""
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(lines) == 1, result.stderr
        return lines[0]

    def market(self, account: int = 0) -> Market:
        """The market over web3, signed by test account `account` (for the test's own moves)."""
        return self.deployment.market_at(self.w3, signer=test_account(account))


@pytest.fixture(scope="module")
def script_world(run_in_repo, tmp_path_factory) -> Iterator[ScriptWorld]:
    """A module's chain: anvil plus `ape run deploy` (TEST::0 deploys and owns the market)."""
    binary = find_anvil()
    if binary is None:
        pytest.skip(f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE})")
    folder = tmp_path_factory.mktemp("script-world")
    node = AnvilNode(binary, log_path=folder / "anvil.log").start()
    try:
        result = run_in_repo(
            "ape",
            "run",
            "deploy",
            "--network",
            FOUNDRY,
            "--account",
            "TEST::0",
            "--deploy-mock-tokens",
            "--out-dir",
            str(folder),
            env={"APE_FOUNDRY_HOST": node.url},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        path = folder / "local.json"
        yield ScriptWorld(node, path, MarketDeployment.read(path), connect(node.url), run_in_repo)
    finally:
        node.stop()
