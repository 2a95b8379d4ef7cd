"""`gpumarket client ...` as a user runs it, against anvil by URL: a job created without its spec
is listed with what to do next, expiring on an idle anvil past the deadline works (its clock
stands still until a block is mined), the connection flags go before or after the subcommand
(client and provider alike), and a node that does not answer or a deployment without its
contract is refused with what to do, never a traceback. Also: `provider status` tells whether
the agent answers, and `market params` shows the min stake in tokens."""

from __future__ import annotations

import dataclasses
import sys
import time

from click.testing import CliRunner, Result

from gpumarket.agentapi.spec import JobSpec, Limits
from gpumarket.cli import main

from .conftest import key, ok, refused

CLIENT = 8
PRICE = 10**12


def _spec_file(cli_world) -> str:
    spec = JobSpec(command=[sys.executable, "-c", "print(1)"], limits=Limits(max_seconds=20, max_output_bytes=1 << 20))
    path = cli_world.folder / "job.json"
    path.write_bytes(spec.canonical_bytes())
    return str(path)


def _run(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(main, list(args), env={"GPUMARKET_CONFIG": ""})


def test_an_open_job_expires_on_an_idle_anvil_once_its_deadline_passed(cli_world):
    """anvil mines only when a transaction arrives: past the accept deadline by the wall clock,
    its latest block is still before it. `cancel --expire` moves the chain's clock on itself."""
    cli_world.market(0).payment_token.mint(key(CLIENT).address, 10**24)
    created = ok(
        cli_world.invoke(
            "client",
            "submit",
            "--spec",
            _spec_file(cli_world),
            "--class",
            "cpu-dev",
            "--open",
            "--max-price",
            str(PRICE),
            "--max-duration",
            "60",
            "--accept-window",
            "3",
            "--no-wait",
            "--json",
            key=CLIENT,
        )
    )
    job_id = created["job_id"]
    assert f"send-spec {job_id}" in created["next"]
    listed = ok(cli_world.invoke("client", "jobs", "--json", key=CLIENT))
    assert [job["job_id"] for job in listed["jobs"]] == [job_id] and listed["client"] == key(CLIENT).address

    deadline = cli_world.market().get_job(job_id).accept_deadline
    while time.time() <= deadline + 1:  # the wall clock past it; anvil's latest block is not
        time.sleep(0.2)
    assert cli_world.market().block_timestamp() <= deadline
    expired = ok(cli_world.invoke("client", "cancel", str(job_id), "--expire", "--json", key=CLIENT))
    assert expired["refund"] == str(PRICE * 60) and cli_world.market().get_job(job_id).state.name == "EXPIRED"
    assert "claim" in ok(cli_world.invoke("client", "status", str(job_id), "--json"))["next"]


def test_the_connection_flags_go_before_or_after_the_subcommand(cli_world):
    flags = ["--rpc", cli_world.node.url, "--deployment", str(cli_world.deployment_path)]
    address = key(CLIENT).address
    for args in (
        ["client", *flags, "--key", f"test-account:{CLIENT}", "jobs", "--json"],
        ["client", "jobs", "--json", *flags, "--key", f"test-account:{CLIENT}"],
        ["client", *flags, "jobs", "--key", f"test-account:{CLIENT}", "--json"],
    ):
        assert ok(_run(*args))["client"] == address, args
    for args in (
        ["provider", *flags, "--key", "test-account:9", "status", "--json"],
        ["provider", "status", "--json", *flags, "--key", "test-account:9"],
    ):
        assert ok(_run(*args))["address"] == key(9).address, args
    assert ok(_run("market", *flags, "params", "--json"))["min_stake"]


def test_provider_status_without_a_key_says_what_it_needs(cli_world):
    result = cli_world.invoke("provider", "status")
    assert result.exit_code == 1
    assert "shows the --key account's standing (or give ADDRESS)" in result.stderr
    assert "signs a transaction" not in result.stderr


def test_provider_status_asks_the_agent(cli_world):
    """Registered, verified and staked, but nothing answers at its endpoint: it cannot take jobs."""
    account = 10
    cli_world.mint_stake(account, 3 * 10**21)
    ok(cli_world.invoke("provider", "stake", str(3 * 10**21), "--approve", "--json", key=account))
    ok(
        cli_world.invoke(
            "provider",
            "register",
            "--class",
            "cpu-dev",
            "--gpus",
            "1",
            "--price",
            str(PRICE),
            "--endpoint",
            "http://127.0.0.1:9/agent",
            "--json",
            key=account,
        )
    )
    cli_world.verify(account)
    status = ok(cli_world.invoke("provider", "status", "--json", key=account))
    assert status["agent"]["answered"] is False
    assert any("does not answer" in problem for problem in status["problems"])
    text = cli_world.invoke("provider", "status", key=account).stdout
    assert "can take jobs: no" in text and "agent down" in text
    # A client directing a job to it is refused before anything is sent.
    cli_world.market(0).payment_token.mint(key(11).address, 10**24)
    count = cli_world.market().job_count()
    refused(
        cli_world.invoke(
            "client",
            "submit",
            "--spec",
            _spec_file(cli_world),
            "--class",
            "cpu-dev",
            "--provider",
            key(account).address,
            "--max-price",
            str(PRICE),
            "--max-duration",
            "60",
            "--json",
            key=11,
        ),
        "agent_down",
    )
    assert cli_world.market().job_count() == count


def test_market_params_shows_the_min_stake_in_tokens(cli_world):
    text = cli_world.invoke("market", "params").stdout
    min_stake = cli_world.market().parameters()["min_stake"]
    assert f"min_stake is {min_stake // 10**18:,} mSTK (stake token)" in text


def test_client_commands_refuse_a_node_that_is_down_or_has_no_contract(cli_world):
    spec = _spec_file(cli_world)
    nowhere = dataclasses.replace(cli_world.deployment, market=key(CLIENT).address)  # an account: no code
    nowhere_path = nowhere.write(cli_world.folder / "nowhere.json")
    for command in (
        ["providers"],
        ["jobs"],
        ["status", "1"],
        ["send-spec", "1", "--spec", spec],
        ["cancel", "1"],
        ["claim"],
        ["submit", "--spec", spec, "--class", "cpu-dev", "--open", "--max-price", "1", "--max-duration", "60"],
    ):
        down = _run(
            "client",
            *command,
            "--json",
            "--rpc",
            "http://127.0.0.1:9",
            "--deployment",
            str(cli_world.deployment_path),
            "--key",
            f"test-account:{CLIENT}",
        )
        refused(down, "node_unreachable")
        text = _run(
            "client",
            *command,
            "--rpc",
            "http://127.0.0.1:9",
            "--deployment",
            str(cli_world.deployment_path),
            "--key",
            f"test-account:{CLIENT}",
        )
        assert text.exit_code == 1 and "Traceback" not in text.stderr and "what to do:" in text.stderr, command
        assert text.stdout == "", command  # in particular, never "no providers" with exit 0
        empty = _run(
            "client",
            *command,
            "--json",
            "--rpc",
            cli_world.node.url,
            "--deployment",
            str(nowhere_path),
            "--key",
            f"test-account:{CLIENT}",
        )
        assert "deploy again" in refused(empty, "no_market")["hint"], command
