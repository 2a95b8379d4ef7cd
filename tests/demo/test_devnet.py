"""`gpumarket devnet`: the demo's story on anvil, every oracle, provider and the client its own
process; and the hidden cheat options of `gpumarket provider run` it uses, refused off a
local chain."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.cli import main
from gpumarket.demo.story import StoryParams
from gpumarket.testing.committee import oracle_key

from .expect import check_story_json


def test_devnet_story_as_processes_on_anvil(tmp_path, anvil_binary, deploy_params):
    completed = subprocess.run(
        [sys.executable, "-m", "gpumarket", "devnet", "--json", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    summary = json.loads(completed.stdout)
    assert summary["chain"] == "chain 31337"
    check_story_json(summary, StoryParams(), deploy_params)
    # Each service ran as its own process, logging to its own file; no oracle key in any of them.
    logs = {path.stem: path.read_text() for path in tmp_path.glob("*.log")}
    assert {"oracle-0", "oracle-1", "oracle-2", "honest-1", "honest-2", "lazy", "client", "anvil", "dashboard"} <= set(
        logs
    )
    # The dashboard served the market while the story ran, and said where.
    url = json.loads((tmp_path / "dashboard.ready.json").read_text())["url"]
    assert f"dashboard: {url}" in completed.stderr and "Traceback" not in logs["dashboard"]
    assert "cheating: 3 honest challenge(s)" in logs["lazy"] and "cheating" not in logs["honest-1"]
    secrets = [oracle_key(i).hex() for i in range(3)]
    assert not [name for name, text in logs.items() if any(secret in text.lower() for secret in secrets)]


def test_cheat_options_are_refused_off_a_local_chain(tmp_path, anvil_binary):
    with AnvilNode(anvil_binary, chain_id=7777, log_path=tmp_path / "anvil.log") as node:
        zero = "0x" + "11" * 20
        deployment = MarketDeployment(
            chain_id=7777, market=zero, stake_token=zero, payment_token=zero, deployer=zero, block=0, mock_tokens=False
        ).write(tmp_path / "deployment.json")
        result = CliRunner().invoke(main, [
            "provider", "run", "--rpc", node.url, "--deployment", str(deployment), "--key", "keystore:nobody",
            "--db", str(tmp_path / "p.sqlite"), "--workdir", str(tmp_path / "jobs"), "--cheat-skip-fraction", "0.5",
        ])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "the cheat options are for local chains only, not chain id 7777" in result.output


def test_cheat_skip_after_needs_a_fraction(tmp_path):
    deployment = tmp_path / "deployment.json"
    deployment.write_text("{}")
    result = CliRunner().invoke(main, [
        "provider", "run", "--rpc", "http://127.0.0.1:1", "--deployment", str(deployment), "--key", "test-account:1",
        "--db", str(tmp_path / "p.sqlite"), "--workdir", str(tmp_path / "jobs"), "--cheat-skip-after", "3",
    ])  # fmt: skip
    assert result.exit_code == 2 and "--cheat-skip-after needs --cheat-skip-fraction" in result.output


def test_devnet_story_with_every_job_in_a_container(tmp_path, anvil_binary, deploy_params, podman_env, python_image):
    completed = subprocess.run(
        [sys.executable, "-m", "gpumarket", "devnet", "--json", "--workdir", str(tmp_path),
         "--runtime", "container", "--containers-conf", podman_env["CONTAINERS_CONF"]],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    summary = json.loads(completed.stdout)
    check_story_json(summary, StoryParams(image=python_image), deploy_params)
    ran = [job for job in summary["jobs"] if job["outcome"] == "COMPLETED"]
    assert ran and all(job["runtime"] == "container" for job in ran), summary["jobs"]
    assert all(job["runtime"] in ("container", None) for job in summary["jobs"])
    assert f"jobs' image: {python_image}" in completed.stderr
