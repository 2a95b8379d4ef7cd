"""`gpumarket client ...` through click's CliRunner, on the shared embedded chain (a ready
ClientEnv passed as click's obj: the embedded chain lives in this process only)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gpumarket.cli import main
from gpumarket.client.cli import ClientEnv, client

from .conftest import CPU_DEV, PRICE, python_spec


def _invoke(world, tmp_path, *args: str, key: str = "test-account:9"):
    path = world.deployment.write(tmp_path / "deployment.json")
    env = ClientEnv(w3=world.w3)
    return CliRunner().invoke(client, ["--deployment", str(path), "--key", key, *args], obj=env)


def test_help_everywhere():
    runner = CliRunner()
    assert "client" in runner.invoke(main, ["--help"]).output
    for command in ([], ["providers"], ["submit"], ["status"], ["result"], ["cancel"], ["claim"]):
        result = runner.invoke(main, ["client", *command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_providers_json_and_text(world, tmp_path):
    listed = _invoke(world, tmp_path, "providers", "--json")
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.output)) == len(world.providers)
    chosen = _invoke(world, tmp_path, "providers", "--class", "cpu-dev", "--max-price", str(2 * PRICE), "--json")
    assert [offer["address"] for offer in json.loads(chosen.output)] == [
        world.providers["best"].address, world.providers["runner_up"].address
    ]
    text = _invoke(world, tmp_path, "providers")
    assert "JAILED" in text.output and "unverified" in text.output


def test_submit_status_result_claim(world, tmp_path):
    spec = python_spec("open('r.txt', 'w').write('via the cli')", outputs=["r.txt"])
    spec_file = tmp_path / "job.json"
    spec_file.write_bytes(spec.canonical_bytes())
    submitted = _invoke(world, tmp_path, "submit", "--spec", str(spec_file), "--class", "cpu-dev",
                        "--max-price", str(2 * PRICE), "--max-duration", "600", "--no-wait", "--json")
    assert submitted.exit_code == 0, submitted.output
    document = json.loads(submitted.output)
    job_id = document["job_id"]
    assert document["provider"] == world.providers["best"].address and document["spec_sent"] is False

    world.accept("best", job_id)
    job_client = world.job_client()
    job_client.send_spec(job_id, spec)
    list(job_client.follow(job_id, timeout_s=20))

    status = _invoke(world, tmp_path, "status", str(job_id), "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["provider_state"] == "finished"
    assert "chain RUNNING" in _invoke(world, tmp_path, "status", str(job_id)).output

    out = tmp_path / "out"
    fetched = _invoke(world, tmp_path, "result", str(job_id), "--out", str(out), "--json")
    assert fetched.exit_code == 0, fetched.output
    assert (out / "outputs" / "r.txt").read_text() == "via the cli"
    assert "outputs/r.txt" in json.loads(fetched.output)["files"]

    stranger = _invoke(world, tmp_path, "result", str(job_id), "--out", str(tmp_path / "x"), key="test-account:10")
    assert stranger.exit_code == 1 and "wrong_signer" in stranger.output


def test_cancel_and_claim_and_errors(world, tmp_path):
    spec_file = tmp_path / "job.json"
    spec_file.write_bytes(python_spec("print(1)").canonical_bytes())
    submitted = _invoke(world, tmp_path, "submit", "--spec", str(spec_file), "--class", str(CPU_DEV), "--open",
                        "--max-price", str(PRICE), "--max-duration", "60", "--no-wait", "--json")
    job_id = json.loads(submitted.output)["job_id"]
    cancelled = _invoke(world, tmp_path, "cancel", str(job_id))
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    again = _invoke(world, tmp_path, "cancel", str(job_id))
    assert again.exit_code == 1 and "CANCELLED" in again.output
    claimed = _invoke(world, tmp_path, "claim", "--json")
    assert claimed.exit_code == 0 and json.loads(claimed.output)
    assert _invoke(world, tmp_path, "claim").output.strip() == "nothing to claim"

    none = _invoke(world, tmp_path, "submit", "--spec", str(spec_file), "--class", "cpu-dev", "--gpus", "4",
                   "--max-price", str(PRICE), "--max-duration", "60")
    assert none.exit_code == 1 and "no provider" in none.output
    unknown = _invoke(world, tmp_path, "status", "999999")
    assert unknown.exit_code == 1 and "unknown" in unknown.output
    bad_key = _invoke(world, tmp_path, "claim", key="keystore:nobody-here")
    assert bad_key.exit_code == 2


def test_submit_waits_for_acceptance_and_sends_the_spec(world, tmp_path):
    """--wait (the default): the command blocks until a provider accepts, then sends the spec."""
    import threading
    import time

    market = world.deployment.market_at(world.w3)
    before = market.job_count()
    stop = threading.Event()

    def accept_the_next_job() -> None:
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            if market.job_count() > before:
                world.accept("best", before + 1)
                return
            time.sleep(0.05)

    acceptor = threading.Thread(target=accept_the_next_job)
    acceptor.start()
    spec_file = tmp_path / "job.json"
    spec_file.write_bytes(python_spec("print('waited')").canonical_bytes())
    try:
        submitted = _invoke(world, tmp_path, "submit", "--spec", str(spec_file), "--class", "cpu-dev",
                            "--max-price", str(2 * PRICE), "--max-duration", "60", "--wait-timeout", "20", "--json")
    finally:
        stop.set()
        acceptor.join(25)
    assert submitted.exit_code == 0, submitted.output
    document = json.loads(submitted.output)
    assert document["spec_sent"] is True and document["job_id"] == before + 1
    list(world.job_client().follow(document["job_id"], timeout_s=20))


def test_a_deployment_of_another_chain_is_a_clean_error(world, tmp_path):
    """The deployment file names another chain than the node serves: exit 1 saying so, no traceback."""
    path = tmp_path / "elsewhere.json"
    data = world.deployment.to_json()
    path.write_text(json.dumps({**data, "chain_id": data["chain_id"] + 1}))
    for command in (["claim"], ["status", "1"], ["providers"]):
        result = CliRunner().invoke(client, ["--deployment", str(path), "--key", "test-account:9", *command],
                                    obj=ClientEnv(w3=world.w3))
        assert result.exit_code == 1, (command, result.output)
        assert "check --rpc and --deployment" in result.output and "Traceback" not in result.output


def test_submit_to_an_unverified_or_jailed_provider_is_refused_before_sending(world, tmp_path):
    spec_file = tmp_path / "job.json"
    spec_file.write_bytes(python_spec("print(1)").canonical_bytes())
    count = world.deployment.market_at(world.w3).job_count()
    for name, words in (("unverified", "not verified"), ("jailed", "jailed")):
        result = _invoke(world, tmp_path, "submit", "--spec", str(spec_file), "--class", "cpu-dev",
                         "--provider", world.providers[name].address, "--max-price", str(PRICE),
                         "--max-duration", "60", "--no-wait")
        assert result.exit_code == 1 and words in result.output, result.output
    assert world.deployment.market_at(world.w3).job_count() == count  # nothing was created
