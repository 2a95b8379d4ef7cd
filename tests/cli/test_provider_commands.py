"""`gpumarket provider register|update|stake|unstake|withdraw|status|claim` against anvil:
each one's effect on the chain, its --json document, and its refusals (exit 1, with what to
do): no allowance (then --approve), release time not reached, wrong network, no key, an
unreachable node."""

from __future__ import annotations

import dataclasses

from click.testing import CliRunner

from gpumarket.chain.connection import advance_time
from gpumarket.cli import main

from .conftest import key, ok, refused

ENDPOINT = "http://127.0.0.1:9/agent"


def test_help_on_every_command():
    runner = CliRunner()
    for command in (
        [],
        ["register"],
        ["update"],
        ["stake"],
        ["unstake"],
        ["withdraw"],
        ["status"],
        ["claim"],
        ["run"],
        ["serve-api"],
    ):
        result = runner.invoke(main, ["provider", *command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command
    for command in ([], ["committee"], ["params"]):
        result = runner.invoke(main, ["market", *command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_register_update_and_status(cli_world):
    account = 1
    address = key(account).address
    registered = ok(
        cli_world.invoke(
            "provider",
            "register",
            "--class",
            "cpu-dev",
            "--gpus",
            "1",
            "--price",
            "1000",
            "--endpoint",
            ENDPOINT,
            "--json",
            key=account,
        )
    )
    assert registered["tx_hash"].startswith("0x") and registered["provider"] == address
    record = cli_world.market().providers(address)
    assert (record.gpu_class, record.gpu_count, record.price_per_gpu_second, record.endpoint) == (1, 1, 1000, ENDPOINT)
    again = refused(
        cli_world.invoke(
            "provider",
            "register",
            "--class",
            "1",
            "--gpus",
            "1",
            "--price",
            "1",
            "--endpoint",
            ENDPOINT,
            "--json",
            key=account,
        ),
        "already_registered",
    )
    assert "update" in again["hint"]

    ok(cli_world.invoke("provider", "update", "--price", "2000", "--json", key=account))
    assert cli_world.market().providers(address).price_per_gpu_second == 2000

    # An unverified provider: the status says so, and what to do.
    status = ok(cli_world.invoke("provider", "status", address, "--json"))  # no key needed for a read
    assert status["registered"] and not status["verified"]
    assert any("not verified" in problem for problem in status["problems"])
    text = cli_world.invoke("provider", "status", key=account)
    assert text.exit_code == 0 and "can take jobs: no" in text.stdout and "hardware not verified" in text.stdout

    cli_world.verify(account)
    status = ok(cli_world.invoke("provider", "status", "--json", key=account))
    assert status["verified"] and status["verified_until"] > status["now"]


def test_register_without_options_is_a_usage_error(cli_world):
    result = cli_world.invoke("provider", "register", "--class", "cpu-dev", key=2)
    assert result.exit_code == 2 and "--gpus" in result.stderr


def test_stake_needs_approval_then_approve_works(cli_world):
    account = 3
    address = key(account).address
    cli_world.mint_stake(account, 5 * 10**21)
    missing = refused(cli_world.invoke("provider", "stake", "2000 tokens", "--json", key=account), "needs_approval")
    assert missing["amount"] == str(2 * 10**21) and "--approve" in missing["hint"]
    text = cli_world.invoke("provider", "stake", "2000 tokens", key=account)
    assert text.exit_code == 1 and "what to do:" in text.stderr and "--approve" in text.stderr
    assert "Traceback" not in text.stderr + text.stdout
    assert cli_world.market().stake_of(address).free == 0

    staked = ok(cli_world.invoke("provider", "stake", "2000 tokens", "--approve", "--json", key=account))
    assert staked["approve_tx_hash"] and staked["tx_hash"] and staked["amount"] == str(2 * 10**21)
    assert cli_world.market().stake_of(address).free == 2 * 10**21

    poor = refused(
        cli_world.invoke("provider", "stake", "100000 tokens", "--approve", "--json", key=account),
        "insufficient_balance",
    )
    assert address in poor["message"]
    refused(cli_world.invoke("provider", "stake", "1.5", "--json", key=account), "bad_amount")


def test_unstake_then_withdraw_only_after_release(cli_world):
    account = 4
    address = key(account).address
    cli_world.mint_stake(account, 3 * 10**21)
    ok(cli_world.invoke("provider", "stake", str(3 * 10**21), "--approve", "--json", key=account))
    refused(cli_world.invoke("provider", "unstake", str(4 * 10**21), "--json", key=account), "insufficient_free_stake")
    refused(cli_world.invoke("provider", "withdraw", "--json", key=account), "nothing_unbonding")

    unbonding = ok(cli_world.invoke("provider", "unstake", "1000 tokens", "--json", key=account))
    release_at = cli_world.market().stake_of(address).release_at
    assert unbonding["release_at"] == release_at

    early = refused(cli_world.invoke("provider", "withdraw", "--json", key=account), "not_released")
    assert early["hint"].startswith("withdraw after ") and " s (" in early["hint"]
    table = cli_world.invoke("provider", "status", key=account).stdout
    assert "unbonding" in table and "release" in table and "(in " in table

    advance_time(cli_world.w3, release_at)
    before = cli_world.market().stake_token.balance_of(address)
    withdrawn = ok(cli_world.invoke("provider", "withdraw", "--json", key=account))
    assert withdrawn["amount"] == str(10**21)
    assert cli_world.market().stake_token.balance_of(address) == before + 10**21
    status = ok(cli_world.invoke("provider", "status", "--json", key=account))
    assert status["stake"]["unbonding"] == "0" and status["stake"]["free"] == str(2 * 10**21)


def test_claim_with_nothing_credited(cli_world):
    result = ok(cli_world.invoke("provider", "claim", "--json", key=5))
    assert result["tx_hash"] is None and result["summary"] == "nothing to claim"


def test_wrong_network_is_refused(cli_world):
    other = dataclasses.replace(cli_world.deployment, chain_id=cli_world.deployment.chain_id + 1)
    path = other.write(cli_world.folder / "other-chain.json")
    for command in (
        ["provider", "status", key(1).address],
        ["provider", "stake", "1", "--approve"],
        ["market", "params"],
    ):
        result = CliRunner(mix_stderr=False).invoke(
            main,
            [*command, "--json", "--rpc", cli_world.node.url, "--deployment", str(path), "--key", "test-account:1"],
            env={"GPUMARKET_CONFIG": ""},
        )
        document = refused(result, "wrong_network")
        assert f"chain {other.chain_id}" in document["message"], command


def test_missing_settings_and_unreachable_node(cli_world):
    refused(cli_world.invoke("provider", "stake", "1", "--json"), "no_key")
    no_rpc = CliRunner(mix_stderr=False).invoke(
        main, ["provider", "status", key(1).address, "--json"], env={"GPUMARKET_CONFIG": ""}
    )
    refused(no_rpc, "no_rpc")
    down = CliRunner(mix_stderr=False).invoke(
        main,
        [
            "provider",
            "status",
            key(1).address,
            "--json",
            "--rpc",
            "http://127.0.0.1:9",
            "--deployment",
            str(cli_world.deployment_path),
        ],
        env={"GPUMARKET_CONFIG": ""},
    )
    refused(down, "node_unreachable")
