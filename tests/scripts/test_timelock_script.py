"""A timelocked market's production sequence on anvil, each step through the commands a protocol
developer runs: `ape run deploy` from params with a `timelock:` section; `ape run committee set`
and `ape run params set` scheduled by the proposer, listed by `ape run timelock pending`, refused
before the delay and executed after it by `ape run timelock execute`; the guardian's immediate
pause and the scheduled unpause; a cancelled change; an account without the role refused; and
`gpumarket market verify-deployment` against the parameters file that records the changes.

The tests share one chain and run in order, each starting where the previous one left it (every
`ape run` is a process of its own, ~10-20 s on a busy machine: the sequence keeps them few)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FOUNDRY, ScriptWorld  # this folder's: tests/scripts is no package
from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, AnvilNode, find_anvil
from gpumarket.chain.connection import advance_time, connect
from gpumarket.chain.keys import test_account
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.testing.committee import Committee
from helpers.timelock import DEPLOYER, EXECUTOR, GUARDIAN, OUTSIDER, PROPOSER, timelocked_params

DELAY = 600
NEW_COMMITTEE = Committee.of_size(4, threshold=3).addresses


@dataclass
class Governed(ScriptWorld):
    """The script world of a timelocked deploy, its parameters file, and the steps repeated below."""

    params_path: Path

    def ok(self, script: str, *args: str, account: int | None = None) -> dict[str, Any]:
        """The JSON document of a script run with --json that must succeed."""
        result = self.run(script, *args, "--json", account=account)
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def execute_after_delay(self, operation: str) -> None:
        advance_time(self.w3, DELAY)
        executed = self.ok("timelock", "execute", operation, account=EXECUTOR)
        assert (executed["action"], executed["operation"]) == ("execute", operation)

    def params(self) -> dict[str, Any]:
        return yaml.safe_load(self.params_path.read_text())

    def verify(self) -> tuple[int, list[str]]:
        """`gpumarket market verify-deployment` as a developer runs it: exit status, checks that differ."""
        result = self.run_in_repo(
            "python",
            "-m",
            "gpumarket",
            "market",
            "verify-deployment",
            "--rpc",
            self.node.url,
            "--deployment",
            str(self.deployment_path),
            "--params",
            str(self.params_path),
            "--json",
            env={"GPUMARKET_CONFIG": ""},  # no developer's config file names another chain or key
        )
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stdout + result.stderr
        document = json.loads(result.stdout)
        assert document["ok"] == (result.returncode == 0)
        return result.returncode, [check["what"] for check in document["checks"] if not check["ok"]]


@pytest.fixture(scope="module")
def governed(run_in_repo, tmp_path_factory) -> Iterator[Governed]:
    binary = find_anvil()
    if binary is None:
        pytest.skip(f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE})")
    folder = tmp_path_factory.mktemp("timelock-scripts")
    data = timelocked_params(DELAY)
    params_path = folder / "timelocked.yaml"
    params_path.write_text(yaml.safe_dump(data))
    node = AnvilNode(binary, log_path=folder / "anvil.log").start()
    try:
        deployed = run_in_repo(
            "ape",
            "run",
            "deploy",
            "--params",
            str(params_path),
            "--network",
            FOUNDRY,
            "--account",
            f"TEST::{DEPLOYER}",
            "--deploy-mock-tokens",
            "--out-dir",
            str(folder),
            env={"APE_FOUNDRY_HOST": node.url},
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        path = folder / "local.json"
        yield Governed(node, path, MarketDeployment.read(path), connect(node.url), run_in_repo, params_path)
    finally:
        node.stop()


def test_the_deploy_records_the_timelock_that_owns_the_market(governed):
    record = json.loads(governed.deployment_path.read_text())
    assert record["timelock"] == record["contracts"]["Timelock"]["address"]
    assert governed.market().owner() == record["timelock"]
    assert record["params_file"] == str(governed.params_path)


def test_the_committee_rotates_only_after_the_delay(governed):
    epoch = governed.market().epoch()
    members = [option for member in NEW_COMMITTEE for option in ("--member", member)]
    scheduled = governed.ok("committee", "set", *members, "--threshold", "3", account=PROPOSER)
    assert scheduled["action"] == "committee_set_scheduled"
    operation = scheduled["operation"]

    listed = governed.ok("timelock", "pending")["operations"]
    assert [(op["id"], op["state"], op["ready_at"]) for op in listed] == [(operation, "waiting", scheduled["ready_at"])]
    assert listed[0]["call"].startswith("set_committee(")

    early = ScriptWorld.refusal(governed.run("timelock", "execute", operation, account=EXECUTOR))
    assert f"operation {operation}" in early and "is waiting" in early and "wait until" in early
    assert governed.market().epoch() == epoch

    governed.execute_after_delay(operation)
    market = governed.market()
    assert (market.epoch(), market.members(), market.threshold()) == (epoch + 1, NEW_COMMITTEE, 3)


def test_a_parameter_changes_through_the_timelock(governed):
    scheduled = governed.ok("params", "set", "slash_bps", "5000", account=PROPOSER)
    assert scheduled["action"] == "params_set_scheduled"
    assert governed.market().parameters()["slash_bps"] == 10_000
    governed.execute_after_delay(scheduled["operation"])
    assert governed.market().parameters()["slash_bps"] == 5_000


def test_the_guardian_pauses_at_once_and_unpausing_waits(governed):
    governed.ok("timelock", "pause", account=GUARDIAN)
    assert governed.market().paused()

    scheduled = governed.ok("timelock", "unpause", account=PROPOSER)
    assert scheduled["action"] == "unpause_scheduled"
    early = ScriptWorld.refusal(governed.run("timelock", "execute", scheduled["operation"], account=EXECUTOR))
    assert "is waiting" in early
    assert governed.market().paused()
    governed.execute_after_delay(scheduled["operation"])
    assert not governed.market().paused()


def test_an_account_without_the_role_is_refused_and_a_change_can_be_cancelled(governed):
    outsider = test_account(OUTSIDER).address
    refused = ScriptWorld.refusal(governed.run("timelock", "treasury", outsider, account=OUTSIDER))
    assert f"{outsider} is not a proposer of the market's Timelock" in refused

    scheduled = governed.ok("timelock", "gpu-class", "cpu-dev", "20", account=PROPOSER)
    assert scheduled["action"] == "gpu_class_set_scheduled"
    cancelled = governed.ok("timelock", "cancel", scheduled["operation"], account=PROPOSER)
    assert cancelled["action"] == "cancel"
    assert governed.market().class_floor(1) == 10
    # Every operation so far, with how it ended: three executed, the class change cancelled.
    states = [op["state"] for op in governed.ok("timelock", "pending", "--all")["operations"]]
    assert sorted(states) == ["cancelled", "done", "done", "done"]


def test_verify_deployment_passes_once_the_file_records_the_changes_and_fails_after_one_more(governed):
    data = governed.params()
    data["committee"] = {"members": NEW_COMMITTEE, "threshold": 3}
    data["parameters"]["slash_bps"] = 5_000
    governed.params_path.write_text(yaml.safe_dump(data))
    assert governed.verify() == (0, [])

    scheduled = governed.ok("params", "set", "settle_grace", "900", account=PROPOSER)
    governed.execute_after_delay(scheduled["operation"])
    assert governed.verify() == (1, ["parameter settle_grace"])
