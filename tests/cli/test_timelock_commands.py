"""`gpumarket market` on a market its Timelock owns, against anvil: a change is scheduled by a
proposer, listed by `pending` with when it applies, refused before its delay, executed after it;
a guardian pauses at once and unpausing waits; cancelled operations never apply; and every
account without the role is refused with the role it lacks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from click.testing import CliRunner

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, AnvilNode, find_anvil
from gpumarket.chain.connection import advance_time, connect
from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.keys import test_account
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.chain.params import load_params
from gpumarket.chain.timelock import MarketCall, Timelock
from gpumarket.cli import main
from gpumarket.testing.committee import Committee
from helpers.timelock import DEPLOYER, EXECUTOR, GUARDIAN, OUTSIDER, PROPOSER, timelocked_params

from .conftest import CliWorld, ok, refused

DELAY = 600


@pytest.fixture(scope="module")
def governed(tmp_path_factory) -> Iterator[CliWorld]:
    """A market deployed by `gpumarket market deploy` from params with a timelock section."""
    binary = find_anvil()
    if binary is None:
        pytest.skip(f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE})")
    folder = tmp_path_factory.mktemp("timelock-world")
    data = timelocked_params(DELAY)
    params_path = folder / "timelocked.yaml"
    params_path.write_text(yaml.safe_dump(data))
    record = folder / "deployment.json"
    node = AnvilNode(binary, log_path=folder / "anvil.log").start()
    try:
        deployed = CliRunner(mix_stderr=False).invoke(
            main,
            ["market", "deploy", "--params", str(params_path), "--out", str(record), "--json"]
            + ["--rpc", node.url, "--key", f"test-account:{DEPLOYER}"],
            env={"GPUMARKET_CONFIG": ""},
        )
        assert deployed.exit_code == 0, deployed.stdout + deployed.stderr
        deployment = MarketDeployment.read(record)
        yield CliWorld(node, connect(node.url), deployment, record, load_params(params_path), folder)
    finally:
        node.stop()


def test_the_deploy_leaves_the_timelock_owning_the_market(governed):
    deployment = governed.deployment
    assert deployment.timelock is not None and governed.market().owner() == deployment.timelock
    assert {"GpuMarket", "Timelock"} <= set(deployment.contracts)
    assert [entry["label"] for entry in deployment.transactions][-1] == "accept_market_ownership"
    # Nothing is pending yet, and the table says so.
    assert ok(governed.invoke("market", "pending", "--json"))["operations"] == []
    assert "(no pending changes)" in governed.invoke("market", "pending").stdout


def test_a_parameter_change_is_scheduled_listed_and_applies_only_after_its_delay(governed):
    before = governed.market().parameters()["slash_bps"]
    refused(governed.invoke("market", "params", "--set", "slash_bps=5000", "--json", key=OUTSIDER), "not_proposer")
    refused(governed.invoke("market", "params", "--set", "slash_bps=5000", "--json", key=DEPLOYER), "not_proposer")
    scheduled = ok(governed.invoke("market", "params", "--set", "slash_bps=5000", "--json", key=PROPOSER))
    assert scheduled["action"] == "params_set_scheduled"
    operation = scheduled["operation"]

    listed = ok(governed.invoke("market", "pending", "--json"))["operations"]
    assert [(op["id"], op["call"], op["state"]) for op in listed] == [(operation, "set_slash_bps(5000)", "waiting")]
    assert "set_slash_bps(5000)" in governed.invoke("market", "pending").stdout
    early = refused(governed.invoke("market", "execute", operation, "--json", key=EXECUTOR), "not_ready")
    assert "wait until" in early["hint"]
    assert governed.market().parameters()["slash_bps"] == before

    advance_time(governed.w3, DELAY)
    refused(governed.invoke("market", "execute", operation, "--json", key=OUTSIDER), "not_executor")
    ok(governed.invoke("market", "execute", operation, "--json", key=EXECUTOR))
    assert governed.market().parameters()["slash_bps"] == 5_000
    assert ok(governed.invoke("market", "pending", "--json"))["operations"] == []
    done = ok(governed.invoke("market", "pending", "--all", "--json"))["operations"]
    assert [op["state"] for op in done if op["id"] == operation] == ["done"]
    refused(governed.invoke("market", "execute", operation, "--json", key=EXECUTOR), "not_ready")


def test_the_committee_rotates_through_the_timelock(governed):
    epoch = governed.market().epoch()
    members = Committee.of_size(4, threshold=3).addresses
    scheduled = ok(
        governed.invoke("market", "committee", "--set", ",".join(members), "--threshold", "3", "--json", key=PROPOSER)
    )
    assert governed.market().epoch() == epoch
    advance_time(governed.w3, DELAY)
    ok(governed.invoke("market", "execute", scheduled["operation"], "--json", key=EXECUTOR))
    market = governed.market()
    assert (market.epoch(), market.members(), market.threshold()) == (epoch + 1, members, 3)


def test_a_guardian_pauses_at_once_and_unpausing_waits_its_delay(governed):
    refused(governed.invoke("market", "pause", "--json", key=OUTSIDER), "not_guardian")
    ok(governed.invoke("market", "pause", "--json", key=GUARDIAN))
    assert governed.market().paused()
    refused(governed.invoke("market", "pause", "--json", key=GUARDIAN), "no_change")
    scheduled = ok(governed.invoke("market", "unpause", "--json", key=PROPOSER))
    refused(governed.invoke("market", "execute", scheduled["operation"], "--json", key=EXECUTOR), "not_ready")
    assert governed.market().paused()
    advance_time(governed.w3, DELAY)
    ok(governed.invoke("market", "execute", scheduled["operation"], "--json", key=EXECUTOR))
    assert not governed.market().paused()


def test_a_cancelled_change_never_applies(governed):
    treasury = governed.market().treasury()
    new_treasury = test_account(OUTSIDER).address
    scheduled = ok(governed.invoke("market", "treasury", new_treasury, "--json", key=PROPOSER))
    refused(governed.invoke("market", "cancel", scheduled["operation"], "--json", key=OUTSIDER), "not_canceller")
    ok(governed.invoke("market", "cancel", scheduled["operation"], "--json", key=PROPOSER))
    advance_time(governed.w3, DELAY)
    refused(governed.invoke("market", "execute", scheduled["operation"], "--json", key=EXECUTOR), "not_ready")
    assert governed.market().treasury() == treasury
    states = {op["id"]: op["state"] for op in ok(governed.invoke("market", "pending", "--all", "--json"))["operations"]}
    assert states[scheduled["operation"]] == "cancelled"
    refused(governed.invoke("market", "cancel", "0x" + "ab" * 32, "--json", key=PROPOSER), "unknown_operation")


def test_a_gpu_class_change_is_scheduled_too(governed):
    scheduled = ok(governed.invoke("market", "gpu-class", "7", "123", "--json", key=PROPOSER))
    assert scheduled["action"] == "gpu_class_set_scheduled" and governed.market().class_floor(7) == 0
    advance_time(governed.w3, DELAY)
    ok(governed.invoke("market", "execute", scheduled["operation"], "--json", key=EXECUTOR))
    assert governed.market().class_floor(7) == 123


def test_the_contract_itself_refuses_an_early_execution_and_a_false_proposer(governed):
    # The pre-checks above never send these; on anvil the Timelock reverts them anyway.
    market = governed.market()
    timelock_address = governed.deployment.timelock
    assert timelock_address is not None
    outsider = Timelock(governed.w3, timelock_address, signer=test_account(OUTSIDER))
    with pytest.raises(ContractRevert, match="access_control: account is missing role"):
        outsider.schedule(MarketCall("set_protocol_fee_bps", (100,)), market)
    operation = outsider.with_signer(test_account(PROPOSER)).schedule(
        MarketCall("set_protocol_fee_bps", (100,)), market
    )
    with pytest.raises(ContractRevert, match="timelock_controller: operation is not ready"):
        outsider.with_signer(test_account(EXECUTOR)).execute(operation, market)
    assert market.parameters()["protocol_fee_bps"] != 100
