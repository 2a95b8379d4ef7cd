"""`gpumarket client ...` through click's CliRunner, on the shared embedded chain (a ready
ClientEnv passed as click's obj: the embedded chain lives in this process only).

Besides each command's effect: a job that exists is never left without a way to finish it
(submit prints its id; Ctrl-C, a lost node, a wait that timed out each end with the commands
that finish it; send-spec hands the spec over later; jobs lists what to do next), and every
command refuses a node that does not answer or a deployment without its contract cleanly."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from click.testing import CliRunner, Result

from gpumarket.agentapi.spec import JobSpec, Limits
from gpumarket.chain.connection import advance_time
from gpumarket.cli import main
from gpumarket.client.cli import ClientEnv, client
from gpumarket.client.jobs import JobClient

from .conftest import CPU_DEV, PARAMS, PRICE, python_spec

CLIENT = "test-account:9"


def _invoke(world, tmp_path, *args: str, key: str | None = CLIENT, deployment=None, w3=True) -> Result:
    """`gpumarket client --deployment FILE [--key KEY] ARGS` on the world's chain (or, w3=False,
    on the node --rpc in ARGS names)."""
    path = (deployment or world.deployment).write(tmp_path / "deployment.json")
    env = ClientEnv(w3=world.w3 if w3 else None)
    flags = ["--deployment", str(path), *(["--key", key] if key else [])]
    return CliRunner(mix_stderr=False).invoke(client, [*flags, *args], obj=env, env={"GPUMARKET_CONFIG": ""})


def _document(result: Result) -> dict:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stdout}{result.stderr}"
    return json.loads(result.stdout)


def _refusal(result: Result, code: str, exit_code: int = 1) -> dict:
    """A --json command's refusal: exit code, one JSON document with `code`, no traceback."""
    assert result.exit_code == exit_code, f"exit {result.exit_code}: {result.stdout}{result.stderr}"
    document = json.loads(result.stdout)
    assert document["error"] == code, document
    assert document["hint"], "a refusal says what to do"
    assert "Traceback" not in result.stdout + result.stderr and "Aborted" not in result.stdout + result.stderr
    return document


def _spec_file(tmp_path, spec: JobSpec, name: str = "job.json"):
    path = tmp_path / name
    path.write_bytes(spec.canonical_bytes())
    return path


def _submit(world, tmp_path, spec_file, *extra: str) -> Result:
    return _invoke(
        world,
        tmp_path,
        "submit",
        "--spec",
        str(spec_file),
        "--class",
        "cpu-dev",
        "--max-price",
        str(2 * PRICE),
        "--max-duration",
        "600",
        *extra,
    )


def test_help_everywhere():
    runner = CliRunner()
    assert "client" in runner.invoke(main, ["--help"]).output
    for command in (
        [],
        ["providers"],
        ["submit"],
        ["send-spec"],
        ["jobs"],
        ["status"],
        ["result"],
        ["cancel"],
        ["claim"],
    ):
        result = runner.invoke(main, ["client", *command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_providers_show_their_agents(world, tmp_path):
    listed = _document(_invoke(world, tmp_path, "providers", "--json"))
    assert len(listed) == len(world.providers)
    agents = {offer["address"]: offer["agent"] for offer in listed}
    assert agents[world.providers["best"].address]["answered"] is True
    assert agents[world.providers["runner_up"].address]["answered"] is False  # nothing listens at its endpoint
    chosen = _document(
        _invoke(world, tmp_path, "providers", "--class", "cpu-dev", "--max-price", str(2 * PRICE), "--json")
    )
    assert [offer["address"] for offer in chosen] == [world.providers["best"].address]
    text = _invoke(world, tmp_path, "providers").stdout
    assert "JAILED" in text and "unverified" in text
    assert "agent up (CPU machine)" in text and "agent down" in text
    assert "0.000001 mPAY" in text  # the price in the payment token, not base units
    none = _invoke(world, tmp_path, "providers", "--class", "cpu-dev", "--gpus", "4", "--max-price", str(PRICE))
    assert none.exit_code == 0 and "no provider can take this job now" in none.stdout
    half = _invoke(world, tmp_path, "providers", "--class", "cpu-dev")
    assert half.exit_code == 2 and "--max-price" in half.stderr


def test_submit_status_result_claim(world, tmp_path):
    spec = python_spec("open('r.txt', 'w').write('via the cli')", outputs=["r.txt"])
    spec_file = _spec_file(tmp_path, spec)
    submitted = _submit(world, tmp_path, spec_file, "--no-wait", "--json")
    document = _document(submitted)
    job_id = document["job_id"]
    assert document["provider"] == world.providers["best"].address and document["spec_sent"] is False
    assert f"send-spec {job_id} --spec {spec_file}" in document["next"]
    text = _submit(world, tmp_path, spec_file, "--no-wait")
    assert "spec not sent yet" in text.stdout and "send-spec" in text.stdout

    world.accept("best", job_id)
    job_client = world.job_client()
    job_client.send_spec(job_id, spec)
    list(job_client.follow(job_id, timeout_s=20))

    status = _document(_invoke(world, tmp_path, "status", str(job_id), "--json"))
    assert status["provider_state"] == "finished" and status["chain_state"] == "RUNNING"
    assert f"result {job_id} --out DIR" in status["next"]
    shown = _invoke(world, tmp_path, "status", str(job_id), key=None)  # a read: no key needed
    assert shown.exit_code == 0 and shown.stdout.startswith(f"job {job_id}: chain RUNNING, provider finished\n")

    out = tmp_path / "out"
    fetched = _document(_invoke(world, tmp_path, "result", str(job_id), "--out", str(out), "--json"))
    assert (out / "outputs" / "r.txt").read_text() == "via the cli"
    assert "outputs/r.txt" in fetched["files"]

    stranger = _invoke(world, tmp_path, "result", str(job_id), "--out", str(tmp_path / "x"), key="test-account:10")
    assert stranger.exit_code == 1 and "wrong_signer" in stranger.stderr


def test_cancel_and_claim_and_errors(world, tmp_path):
    spec_file = _spec_file(tmp_path, python_spec("print(1)"))
    submitted = _invoke(
        world,
        tmp_path,
        "submit",
        "--spec",
        str(spec_file),
        "--class",
        str(CPU_DEV),
        "--open",
        "--max-price",
        str(PRICE),
        "--max-duration",
        "60",
        "--no-wait",
        "--json",
    )
    job_id = _document(submitted)["job_id"]
    cancelled = _document(_invoke(world, tmp_path, "cancel", str(job_id), "--json"))
    assert cancelled["job_id"] == job_id and cancelled["tx_hash"] and cancelled["refund"] == str(PRICE * 60)
    _refusal(_invoke(world, tmp_path, "cancel", str(job_id), "--json"), "job_not_open")
    claimed = _invoke(world, tmp_path, "claim")
    assert claimed.exit_code == 0 and "claimed" in claimed.stdout and "mPAY" in claimed.stdout  # formatted
    assert _invoke(world, tmp_path, "claim").stdout.startswith("nothing to claim")

    none = _invoke(
        world,
        tmp_path,
        "submit",
        "--spec",
        str(spec_file),
        "--class",
        "cpu-dev",
        "--gpus",
        "4",
        "--max-price",
        str(PRICE),
        "--max-duration",
        "60",
        "--json",
    )
    _refusal(none, "no_provider")
    _refusal(_invoke(world, tmp_path, "status", "999999", "--json"), "no_such_job")
    _refusal(_invoke(world, tmp_path, "claim", "--json", key="keystore:nobody-here"), "bad_key")
    no_key = _invoke(world, tmp_path, "jobs", key=None)
    assert no_key.exit_code == 1 and "lists the --key account's jobs" in no_key.stderr


def test_numbers_that_mean_nothing_are_usage_errors(world, tmp_path):
    spec_file = _spec_file(tmp_path, python_spec("print(1)"))
    for flags in (
        ["--wait-timeout", "-5"],
        ["--wait-timeout", "0"],
        ["--accept-window", "0"],
        ["--max-duration", str(31 * 86_400)],
        ["--gpus", "0"],
    ):
        result = _submit(world, tmp_path, spec_file, *flags)
        assert result.exit_code == 2 and "Invalid value" in result.stderr, flags
    result = _invoke(world, tmp_path, "--connect-timeout", "0", "jobs")
    assert result.exit_code == 2
    result = _submit(world, tmp_path, spec_file, "--open", "--provider", world.providers["best"].address)
    assert result.exit_code == 2 and "exclude each other" in result.stderr


def test_submit_waits_for_acceptance_and_sends_the_spec(world, tmp_path):
    """--wait (the default): the id comes first (stderr), then the spec goes once accepted."""
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
    spec_file = _spec_file(tmp_path, python_spec("print('waited')"))
    try:
        submitted = _invoke(
            world,
            tmp_path,
            "submit",
            "--spec",
            str(spec_file),
            "--class",
            "cpu-dev",
            "--max-price",
            str(2 * PRICE),
            "--max-duration",
            "60",
            "--wait-timeout",
            "20",
            "--json",
        )
    finally:
        stop.set()
        acceptor.join(25)
    document = _document(submitted)
    assert document["spec_sent"] is True and document["job_id"] == before + 1
    assert f"job {before + 1} created" in submitted.stderr and "waiting up to 20 s" in submitted.stderr
    list(world.job_client().follow(document["job_id"], timeout_s=20))


def test_ctrl_c_during_the_wait_says_how_to_finish_the_job(world, tmp_path, monkeypatch):
    def interrupted(self, job_id, *, timeout_s=120.0):
        raise KeyboardInterrupt

    monkeypatch.setattr(JobClient, "wait_running", interrupted)
    spec_file = _spec_file(tmp_path, python_spec("print('interrupted')"))
    count = world.deployment.market_at(world.w3).job_count()
    result = _submit(world, tmp_path, spec_file)
    job_id = count + 1
    assert result.exit_code == 130, result.stdout + result.stderr
    assert f"job {job_id} created" in result.stderr  # the id came before the wait
    assert f"interrupted: job {job_id} is not finished" in result.stderr
    assert f"gpumarket client send-spec {job_id} --spec {spec_file}" in result.stderr
    assert f"gpumarket client status {job_id}" in result.stderr and "gpumarket client jobs" in result.stderr
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr

    document = _refusal(_submit(world, tmp_path, spec_file, "--json"), "interrupted", exit_code=130)
    assert document["job_id"] == job_id + 1 and document["spec_sent"] is False
    assert f"send-spec {job_id + 1}" in document["hint"]


def test_a_lost_node_during_the_wait_says_how_to_finish_the_job(world, tmp_path, monkeypatch):
    def node_gone(self, job_id, *, timeout_s=120.0):
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(JobClient, "wait_running", node_gone)
    spec_file = _spec_file(tmp_path, python_spec("print('lost')"))
    document = _refusal(_submit(world, tmp_path, spec_file, "--json"), "node_unreachable")
    assert f"send-spec {document['job_id']}" in document["hint"] and "check --rpc" in document["hint"]


def test_a_wait_that_times_out_leaves_the_job_to_send_spec(world, tmp_path):
    """Nobody accepts within --wait-timeout: the job stays open; send-spec --wait finishes it."""
    spec = python_spec("print('later')")
    spec_file = _spec_file(tmp_path, spec)
    document = _refusal(_submit(world, tmp_path, spec_file, "--wait-timeout", "0.3", "--json"), "job_not_accepted")
    job_id = document["job_id"]
    assert f"send-spec {job_id} --spec {spec_file} --wait" in document["hint"]

    # The listing says what to do, send-spec refuses a wrong spec and, before acceptance, needs --wait.
    listing = _document(_invoke(world, tmp_path, "jobs", "--active", "--json"))
    assert f"send-spec {job_id}" in next(job["next"] for job in listing["jobs"] if job["job_id"] == job_id)
    wrong = _spec_file(tmp_path, python_spec("print('another')"), "other.json")
    _refusal(_invoke(world, tmp_path, "send-spec", str(job_id), "--spec", str(wrong), "--json"), "spec_mismatch")
    _refusal(_invoke(world, tmp_path, "send-spec", str(job_id), "--spec", str(spec_file), "--json"), "job_not_accepted")
    _refusal(
        _invoke(world, tmp_path, "send-spec", str(job_id), "--spec", str(spec_file), "--json", key="test-account:10"),
        "not_client",
    )

    world.accept("best", job_id)
    listing = _document(_invoke(world, tmp_path, "jobs", "--json"))
    waiting = next(job for job in listing["jobs"] if job["job_id"] == job_id)
    assert waiting["agent"]["has_spec"] is False and f"send-spec {job_id} --spec FILE" in waiting["next"]
    sent = _invoke(
        world, tmp_path, "send-spec", str(job_id), "--spec", str(spec_file), "--wait", "--wait-timeout", "20"
    )
    assert sent.exit_code == 0, sent.stdout + sent.stderr
    assert "which started it" in sent.stdout and f"result {job_id} --out DIR" in sent.stdout
    again = _document(_invoke(world, tmp_path, "send-spec", str(job_id), "--spec", str(spec_file), "--json"))
    assert again["started"] is False and again["spec_sent"] is True  # the agent keeps the first
    text = _invoke(world, tmp_path, "jobs").stdout
    assert f"jobs of {world.client.address}" in text and f"result {job_id} --out DIR" in text


def test_a_directed_submit_to_an_agent_that_does_not_answer_is_refused_at_once(world, tmp_path):
    spec_file = _spec_file(tmp_path, python_spec("print(1)"))
    count = world.deployment.market_at(world.w3).job_count()
    result = _submit(world, tmp_path, spec_file, "--provider", world.providers["runner_up"].address, "--json")
    assert "does not answer" in _refusal(result, "agent_down")["message"]
    for name, words in (("unverified", "not verified"), ("jailed", "jailed")):
        result = _submit(world, tmp_path, spec_file, "--provider", world.providers[name].address, "--no-wait")
        assert result.exit_code == 1 and words in result.stderr, result.stderr
    assert world.deployment.market_at(world.w3).job_count() == count  # nothing was created


def test_a_missing_command_shows_its_exit_status(world, tmp_path):
    spec = JobSpec(command=["/nonexistent/command"], limits=Limits(max_seconds=20, max_output_bytes=1 << 20))
    job_client = world.job_client()
    job_id = job_client.create_job(
        spec,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=2 * PRICE,
        max_duration=600,
        provider=world.providers["best"].address,
    )
    world.accept("best", job_id)
    job_client.send_spec(job_id, spec)
    updates = list(job_client.follow(job_id, timeout_s=20))
    assert updates[-1].describe().endswith("provider finished, command exit status 127")
    shown = _invoke(world, tmp_path, "status", str(job_id)).stdout
    assert shown.startswith(f"job {job_id}: chain RUNNING, provider finished, command exit status 127\n")
    assert re.search(r"^agent\s+finished, command exit status 127$", shown, re.M)


def test_expire_waits_for_the_deadline_by_the_chains_clock(world, tmp_path):
    spec_file = _spec_file(tmp_path, python_spec("print('expire me')"))
    job_id = _document(
        _invoke(
            world,
            tmp_path,
            "submit",
            "--spec",
            str(spec_file),
            "--class",
            "cpu-dev",
            "--open",
            "--max-price",
            str(PRICE),
            "--max-duration",
            "60",
            "--accept-window",
            "60",
            "--no-wait",
            "--json",
        )
    )["job_id"]
    early = _refusal(_invoke(world, tmp_path, "cancel", str(job_id), "--expire", "--json"), "not_expirable_yet")
    assert "to go" in early["message"] and "mined" in early["hint"]
    advance_time(world.w3, 120)
    listing = _document(_invoke(world, tmp_path, "jobs", "--active", "--json"))
    assert f"cancel {job_id} --expire" in next(job["next"] for job in listing["jobs"] if job["job_id"] == job_id)
    expired = _document(_invoke(world, tmp_path, "cancel", str(job_id), "--expire", "--json", key="test-account:10"))
    assert expired["action"] == "expire" and expired["refund"] == str(PRICE * 60)


def test_key_goes_before_or_after_the_subcommand(world, tmp_path):
    path = world.deployment.write(tmp_path / "deployment.json")
    for args in (
        ["--key", CLIENT, "jobs", "--json"],
        ["jobs", "--key", CLIENT, "--json"],
        ["jobs", "--json", "--deployment", str(path), "--key", CLIENT],
    ):
        result = CliRunner(mix_stderr=False).invoke(
            client, ["--deployment", str(path), *args], obj=ClientEnv(w3=world.w3), env={"GPUMARKET_CONFIG": ""}
        )
        assert _document(result)["client"] == world.client.address, args
    after = CliRunner(mix_stderr=False).invoke(
        client,
        ["--key", "test-account:10", "jobs", "--key", CLIENT, "--deployment", str(path), "--json"],
        obj=ClientEnv(w3=world.w3),
        env={"GPUMARKET_CONFIG": ""},
    )
    assert _document(after)["client"] == world.client.address  # the subcommand's own flag wins


# Every command, with what it needs to get as far as the node.
EVERY_COMMAND = [
    ["providers"],
    ["submit", "--spec", "SPEC", "--class", "cpu-dev", "--max-price", "1", "--max-duration", "60"],
    ["send-spec", "1", "--spec", "SPEC"],
    ["jobs"],
    ["status", "1"],
    ["result", "1", "--out", "OUT"],
    ["cancel", "1"],
    ["cancel", "1", "--expire"],
    ["claim"],
]


def _every_command(tmp_path) -> list[list[str]]:
    spec_file = str(_spec_file(tmp_path, python_spec("print(1)")))
    return [
        [spec_file if arg == "SPEC" else str(tmp_path / "out") if arg == "OUT" else arg for arg in command]
        for command in EVERY_COMMAND
    ]


@pytest.mark.parametrize("as_json", [True, False])
def test_every_command_refuses_an_unreachable_node_cleanly(world, tmp_path, as_json):
    for command in _every_command(tmp_path):
        result = _invoke(
            world, tmp_path, *command, *(["--json"] if as_json else []), "--rpc", "http://127.0.0.1:9", w3=False
        )
        if as_json:
            document = _refusal(result, "node_unreachable")
            assert "check --rpc" in document["hint"], command
        else:
            assert result.exit_code == 1, (command, result.stdout, result.stderr)
            assert "unreachable" in result.stderr and "what to do:" in result.stderr, command
            assert "Traceback" not in result.stderr and result.stdout == "", command


def test_every_command_refuses_a_deployment_without_its_contract(world, tmp_path):
    nowhere = dataclasses.replace(world.deployment, market=world.other.address)  # an account: no code
    for command in _every_command(tmp_path):
        document = _refusal(_invoke(world, tmp_path, *command, "--json", deployment=nowhere), "no_market")
        assert "deploy" in document["hint"], command


def test_a_deployment_of_another_chain_is_a_clean_error(world, tmp_path):
    """The deployment file names another chain than the node serves: exit 1 saying so, no traceback."""
    elsewhere = dataclasses.replace(world.deployment, chain_id=world.deployment.chain_id + 1)
    for command in (["claim"], ["status", "1"], ["providers"], ["jobs"]):
        result = _invoke(world, tmp_path, *command, deployment=elsewhere)
        assert result.exit_code == 1, (command, result.stdout, result.stderr)
        assert "wrong network" in result.stderr and "Traceback" not in result.stderr


def test_a_real_process_interrupted_while_waiting_prints_the_job_id(tmp_path):
    """SIGINT to a real `gpumarket client submit` waiting for acceptance: exit 130, the job's id
    and how to finish it, no traceback. The child deploys its own market on its own embedded
    chain (an embedded chain cannot be shared across processes) and submits an open job nobody
    accepts."""
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    spec_file = _spec_file(tmp_path, python_spec("print('signal')"))
    process = subprocess.Popen(
        [sys.executable, str(driver), str(spec_file), str(PARAMS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = ""
        while "waiting up to" not in seen and process.poll() is None:
            seen += process.stderr.readline()  # the deployment takes seconds; the wait is 300 s
        assert "waiting up to" in seen, seen
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130, seen + err
    assert "interrupted: job 1 is not finished" in err and "send-spec 1" in err and "Traceback" not in err


_DRIVER = """
import sys
from pathlib import Path

from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.keys import test_account
from gpumarket.chain.market_deploy import deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.client.cli import ClientEnv, client

spec, params = sys.argv[1], sys.argv[2]
w3 = connect(EMBEDDED)
deployment = deploy_market_web3(w3, test_account(0), load_params(params))
deployment.market_at(w3, signer=test_account(0)).payment_token.mint(test_account(9).address, 10**24)
path = deployment.write(Path(spec).parent / "child-deployment.json")
client.main(["--deployment", str(path), "--key", "test-account:9", "submit", "--spec", spec, "--class", "cpu-dev",
             "--open", "--max-price", "1", "--max-duration", "60", "--wait-timeout", "300"],
            obj=ClientEnv(w3=w3), prog_name="gpumarket client")
"""
