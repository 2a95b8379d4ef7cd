"""`ape run provider ...` as a provider runs it, against one anvil and one `ape run deploy`.

Each test uses its own test account, so the stories do not depend on their order.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from gpumarket.chain.connection import advance_time, latest_timestamp
from gpumarket.chain.keys import test_account
from gpumarket.testing.committee import Committee, hardware_report

COMMITTEE = Committee.of_size(3, threshold=2)  # deploy/params/default.yaml's committee
TOKEN = 10**18  # the mock tokens have 18 decimals
ENDPOINT = "http://127.0.0.1:8700"
PRICE = 1_000


def _register(world, account: int, price: int = PRICE) -> None:
    result = world.run(
        "provider",
        "register",
        "--class",
        "cpu-dev",
        "--gpus",
        "1",
        "--price",
        str(price),
        "--endpoint",
        ENDPOINT,
        account=account,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _status(world, account: int) -> dict:
    result = world.run("provider", "status", "--json", account=account)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_register_stake_and_status(script_world):
    account = 2
    address = test_account(account).address
    market = script_world.market(account)
    min_stake = market.parameters()["min_stake"]

    _register(script_world, account)
    state = _status(script_world, account)
    assert (state["registered"], state["gpu_class_name"], state["price_per_gpu_second"], state["endpoint"]) == (
        True,
        "cpu-dev",
        str(PRICE),
        ENDPOINT,
    )
    assert state["verified"] is False
    assert any("hardware not verified" in problem for problem in state["problems"])

    # Registering twice is refused with the way forward.
    twice = script_world.run(
        "provider", "register", "--class", "1", "--gpus", "1", "--price", "1", "--endpoint", ENDPOINT, account=account
    )
    assert "use `update`" in script_world.refusal(twice)

    # No tokens yet: the balance check names what is missing.
    message = script_world.refusal(script_world.run("provider", "stake", "1000 tokens", account=account))
    assert "holds 0 mSTK" in message and "get at least 1,000 mSTK" in message

    market.stake_token.mint(address, min_stake)
    # No allowance and no terminal to ask on: refused, pointing at --yes; nothing is sent.
    message = script_world.refusal(script_world.run("provider", "stake", "1000 tokens", account=account))
    assert "rerun with --yes" in message
    assert market.stake_of(address).free == 0
    assert market.stake_token.allowance(address, market.address) == 0

    result = script_world.run("provider", "stake", "1000 tokens", "--yes", "--json", account=account)
    assert result.returncode == 0, result.stdout + result.stderr
    staked = json.loads(result.stdout)
    assert [tx["label"] for tx in staked["transactions"]] == ["approve", "stake"]
    assert staked["amount"] == str(1_000 * TOKEN) == str(min_stake)
    assert market.stake_of(address).free == min_stake
    assert market.stake_token.balance_of(address) == 0

    # The committee measures the machine: status shows the class verified and until when.
    valid_until = latest_timestamp(script_world.w3) + 3_600
    report = hardware_report(address, 1, 1, market.class_floor(1), valid_until, epoch=market.epoch())
    market.submit_hardware_report(report, COMMITTEE.sign(market.domain, report))
    state = _status(script_world, account)
    assert state["verified"] is True and state["verified_until"] == valid_until
    assert state["stake"]["free"] == str(min_stake) and state["problems"] == []

    # The terminal view: aligned name/value rows.
    text = script_world.run("provider", "status", "--address", address).stdout
    assert re.search(r"^verified\s+yes, until .* UTC \(in .+\)$", text, flags=re.MULTILINE), text
    rows = {m.group(1): m for m in re.finditer(r"^(free|locked|unbonding)\s+(\S+ mSTK)", text, flags=re.MULTILINE)}
    assert rows["free"].group(2) == "1,000 mSTK" and rows["unbonding"].group(2) == "0 mSTK"
    assert len({m.end(2) - m.start() for m in rows.values()}) == 1  # amounts right-aligned in one column


def test_unstake_is_withdrawable_only_after_the_release_time(script_world):
    account = 3
    address = test_account(account).address
    market = script_world.market(account)
    period = market.parameters()["unbonding_period"]
    market.stake_token.mint(address, 10 * TOKEN)
    assert script_world.run("provider", "stake", "10 tokens", "--yes", account=account).returncode == 0

    message = script_world.refusal(script_world.run("provider", "withdraw", account=account))
    assert "has no unbonding stake" in message and "request an unstake first" in message
    message = script_world.refusal(script_world.run("provider", "unstake", "11 tokens", account=account))
    assert "10 mSTK free" in message

    result = script_world.run("provider", "unstake", "4 tokens", "--json", account=account)
    assert result.returncode == 0, result.stdout + result.stderr
    release_at = json.loads(result.stdout)["release_at"]
    assert release_at == latest_timestamp(script_world.w3) + period  # docs/PROTOCOL.md: now + UNBONDING_PERIOD

    state = _status(script_world, account)["stake"]
    assert (state["free"], state["unbonding"], state["release_at"], state["released"]) == (
        str(6 * TOKEN),
        str(4 * TOKEN),
        release_at,
        False,
    )
    message = script_world.refusal(script_world.run("provider", "withdraw", account=account))
    assert "not released yet" in message and "withdraw after" in message

    advance_time(script_world.w3, release_at - latest_timestamp(script_world.w3))
    assert _status(script_world, account)["stake"]["released"] is True
    result = script_world.run("provider", "withdraw", account=account)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "withdrew 4 mSTK" in result.stdout
    assert market.stake_token.balance_of(address) == 4 * TOKEN
    assert market.stake_of(address).unbonding == 0


def test_update_changes_only_what_is_given(script_world):
    account = 5
    _register(script_world, account)
    result = script_world.run("provider", "update", "--price", "900", account=account)
    assert result.returncode == 0, result.stdout + result.stderr
    record = script_world.market().providers(test_account(account).address)
    assert (record.price_per_gpu_second, record.gpu_class, record.endpoint) == (900, 1, ENDPOINT)
    refused = script_world.refusal
    assert "nothing to change" in refused(script_world.run("provider", "update", "--price", "900", account=account))
    assert "not an http(s) URL" in refused(
        script_world.run("provider", "update", "--endpoint", "ftp://x", account=account)
    )
    assert "register first" in refused(script_world.run("provider", "update", "--price", "1", account=6))


def test_wrong_network_missing_deployment_and_no_rpc_are_refused(script_world, tmp_path):
    address = test_account(2).address
    # ethereum:local:test is ape's in-process chain (chain id 1337); the record is anvil's.
    message = script_world.refusal(
        script_world.run("provider", "status", "--address", address, network="ethereum:local:test")
    )
    assert message.startswith("Error: wrong network:")
    assert f"on chain {script_world.deployment.chain_id}" in message and "serves chain 1337" in message
    message = script_world.refusal(
        script_world.run("provider", "status", "--address", address, deployment=tmp_path / "absent.json")
    )
    assert "no deployment record" in message and "ape run deploy" in message
    # The right chain, but no market at the recorded address (a restarted local node).
    record = json.loads(script_world.deployment_path.read_text())
    record["market"] = "0x000000000000000000000000000000000000dEaD"
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(record))
    message = script_world.refusal(script_world.run("provider", "status", "--address", address, deployment=stale))
    assert "no contract at 0x000000000000000000000000000000000000dEaD" in message and "deploy again" in message
    # titanoboa (this project's default local provider) runs in process: nothing to send through.
    message = script_world.refusal(
        script_world.run("provider", "status", "--address", address, network="ethereum:local:boa")
    )
    assert "offers no JSON-RPC connection" in message and "ethereum:local:foundry" in message


def test_a_terminal_is_asked_before_approving(script_world, repo_root: Path):
    account = 7
    address = test_account(account).address
    market = script_world.market(account)
    market.stake_token.mint(address, 3 * TOKEN)
    command = [
        str(Path(sys.executable).parent / "ape"),
        "run",
        "provider",
        "stake",
        "2 tokens",
        "--network",
        "ethereum:local:foundry",
        "--deployment",
        str(script_world.deployment_path),
        "--account",
        f"TEST::{account}",
    ]
    env = {**os.environ, "APE_FOUNDRY_HOST": script_world.node.url}

    def answer(reply: str) -> subprocess.CompletedProcess:
        controller, terminal = pty.openpty()
        try:
            os.write(controller, reply.encode())
            return subprocess.run(
                command,
                cwd=repo_root,
                stdin=terminal,
                capture_output=True,
                text=True,
                env=env,
                timeout=240,
                check=False,
            )
        finally:
            os.close(terminal)
            os.close(controller)

    declined = answer("n\n")
    assert "Approve 2000000000000000000 base units of mSTK" in declined.stderr
    # The answer is echoed on the terminal, not on stderr: the refusal follows the question.
    assert declined.returncode == 1 and "Traceback" not in declined.stderr
    assert declined.stderr.rstrip().endswith(
        "? [y/N]:Error: not approved: nothing was sent; rerun and approve, or with --yes"
    )
    assert market.stake_token.allowance(address, market.address) == 0

    accepted = answer("y\n")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert market.stake_of(address).free == 2 * TOKEN
    assert market.stake_token.allowance(address, market.address) == 0  # exactly the amount, all used
