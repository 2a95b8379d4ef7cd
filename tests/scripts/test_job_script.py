"""`ape run job ...` as a client runs it, against one anvil and one `ape run deploy`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpumarket.chain.keys import test_account

CLIENT, OTHER, PROVIDER = 4, 5, 2
MAX_PRICE, MAX_DURATION = 1_000, 600
SPEC = {"version": 1, "command": ["echo", "hi"], "limits": {"max_seconds": 60, "max_output_bytes": 1_048_576}}


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "job.json"
    path.write_text(json.dumps(SPEC))
    return path


def _create(world, spec_path: Path, *extra: str, account: int = CLIENT):
    return world.run(
        "job",
        "create",
        "--spec",
        str(spec_path),
        "--class",
        "cpu-dev",
        "--max-price",
        str(MAX_PRICE),
        "--max-duration",
        str(MAX_DURATION),
        *extra,
        account=account,
    )


def test_create_status_cancel_and_claim(script_world, spec_path):
    client = test_account(CLIENT).address
    market = script_world.market(CLIENT)
    payment = market.payment_token
    escrow = MAX_PRICE * 1 * MAX_DURATION  # docs/PROTOCOL.md: max price x GPUs x max duration
    payment.mint(client, escrow)
    provider = test_account(PROVIDER).address
    script_world.market(PROVIDER).register(1, 1, MAX_PRICE, "http://127.0.0.1:8700")  # never verified

    # A directed job to a provider without a hardware report could never start.
    message = script_world.refusal(_create(script_world, spec_path, "--provider", provider))
    assert f"provider {provider} is not verified" in message and "create an open job" in message
    # No allowance and no terminal: refused, pointing at --yes; nothing is sent.
    assert "rerun with --yes" in script_world.refusal(_create(script_world, spec_path))
    assert market.job_count() == 0 and payment.allowance(client, market.address) == 0

    result = _create(script_world, spec_path, "--yes", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    created = json.loads(result.stdout)
    assert [tx["label"] for tx in created["transactions"]] == ["approve", "create_job"]
    job_id = created["job_id"]
    assert job_id == market.job_count() and created["escrow"] == str(escrow)
    assert payment.balance_of(client) == 0

    result = script_world.run("job", "status", str(job_id), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads(result.stdout)
    assert (state["state"], state["client"], state["provider"], state["escrow"], state["max_duration"]) == (
        "OPEN",
        client,
        None,
        str(escrow),
        MAX_DURATION,
    )
    text = script_world.run("job", "status", str(job_id)).stdout
    assert "any (open job)" in text and "waiting for a provider to accept it" in text

    message = script_world.refusal(script_world.run("job", "cancel", str(job_id), account=OTHER))
    assert f"belongs to {client}" in message and "the account that created the job" in message

    result = script_world.run("job", "cancel", str(job_id), "--json", account=CLIENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["refund"] == str(escrow)  # an OPEN job's whole escrow comes back
    message = script_world.refusal(script_world.run("job", "cancel", str(job_id), account=CLIENT))
    assert "is CANCELLED; only an OPEN job can be cancelled" in message

    result = script_world.run("job", "claim", "--json", account=CLIENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["claimed"][payment.address] == str(escrow)
    assert payment.balance_of(client) == escrow
    again = script_world.run("job", "claim", account=CLIENT)
    assert again.returncode == 0 and again.stdout.strip() == "nothing to claim"


def test_refusals_name_the_problem(script_world, spec_path, tmp_path):
    message = script_world.refusal(script_world.run("job", "status", "999"))
    assert "job 999 does not exist" in message
    message = script_world.refusal(script_world.run("job", "status", "1", network="ethereum:local:test"))
    assert message.startswith("Error: wrong network:")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"version": 1, "command": ["echo"]}))
    result = _create(script_world, broken, "--yes")
    assert result.returncode == 2 and "Invalid value for --spec: limits: Field required" in result.stderr
    result = script_world.run(
        "job",
        "create",
        "--spec",
        str(spec_path),
        "--class",
        "no-such-gpu",
        "--max-price",
        "1",
        "--max-duration",
        "1",
        account=CLIENT,
    )
    assert result.returncode == 2 and "'no-such-gpu' is neither a class id nor a known class name" in result.stderr
