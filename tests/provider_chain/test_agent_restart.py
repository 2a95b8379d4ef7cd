"""`gpumarket provider run` on anvil, stopped with a real SIGINT, SIGTERM or SIGKILL while its jobs
run and started again with the same command. Three jobs, each run until the test releases it
(a file in its working directory), so every point of their lives is the test's choice:

- one still runs when the agent comes back: it finishes, and its usage record's wall time
  covers the whole job from its real start, the time the agent was down included;
- one ends while the agent is down: the new agent reports it finished at once, with its exit
  code, and serves its result and its usage record (which hashes to the evidence hash);
- one is killed (SIGKILL to its process group) while the agent is down: it is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from eth_utils import keccak

from gpumarket.agentapi.auth import sign_request
from gpumarket.agentapi.result import ResultBundle
from gpumarket.agentapi.spec import JobSpec, Limits
from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.connection import connect
from gpumarket.chain.models import JobState
from gpumarket.measure.metering import UsageRecord
from provider.support import Http

from .conftest import Chain, build_chain
from .test_service import wait_for

RELEASE = "release"


def released_spec(name: str) -> JobSpec:
    """A job that runs until a file named RELEASE appears in its working directory."""
    code = (
        "import os, time\n"
        f"while not os.path.exists({RELEASE!r}):\n"
        "    time.sleep(0.05)\n"
        f"open('out.txt', 'w').write({name!r})\n"
        f"print({name!r}, 'done')\n"
    )
    return JobSpec(
        command=[sys.executable, "-c", code],
        limits=Limits(max_seconds=600, max_output_bytes=1 << 20),
        outputs=["out.txt"],
    )


class Agent:
    """`gpumarket provider run` as a process, started again on the same database and folders."""

    def __init__(self, tmp_path: Path, rpc: str, deployment: Path) -> None:
        self.tmp_path = tmp_path
        self.jobs = tmp_path / "jobs"
        self.ready = tmp_path / "provider.ready"
        self.command = [
            sys.executable, "-m", "gpumarket", "provider", "run", "--rpc", rpc, "--deployment", str(deployment),
            "--key", "test-account:2", "--db", str(tmp_path / "provider.sqlite"), "--workdir", str(self.jobs),
            "--port", "0", "--backend", "numpy", "--confirmations", "0", "--poll-interval", "0.1",
            "--meter-interval", "0.1", "--max-gpus", "3", "--ready-file", str(self.ready), "--runtime", "process",
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None
        self.http: Http | None = None
        self.log_path: Path | None = None

    def start(self, name: str) -> Http:
        self.ready.unlink(missing_ok=True)
        self.log_path = self.tmp_path / f"{name}.log"
        with open(self.log_path, "wb") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.ready.exists() or self.process.poll() is not None, 60, "the provider is ready")
        assert self.process.poll() is None, self.log_path.read_text()
        url = urlsplit(json.loads(self.ready.read_text())["url"])
        self.http = Http(url.hostname, url.port)
        return self.http

    def signal(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def status(self, job_id: int) -> dict:
        assert self.http is not None
        return self.http.request("GET", f"/jobs/{job_id}/status").json()

    def pid_of(self, job_id: int) -> int:
        return int((self.jobs / f"job-{job_id}" / "pid").read_text())

    def release(self, job_id: int) -> float:
        (self.jobs / f"job-{job_id}" / "work" / RELEASE).touch()
        return time.time()

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pid_file in self.jobs.glob("job-*/pid"):
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):  # already gone
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def send_specs(chain: Chain, agent: Agent, specs: dict[str, JobSpec]) -> dict[str, int]:
    """Creates one job per spec, waits until the agent took them on chain, sends the specs."""
    ids = {name: chain.create_job(spec.hash()) for name, spec in specs.items()}
    wait_for(
        lambda: all(chain.market().get_job(job_id).state == JobState.RUNNING for job_id in ids.values()),
        30,
        "the provider accepts the jobs",
    )
    for name, job_id in ids.items():
        spec = specs[name]
        signed = sign_request(
            chain.client,
            action="put-spec",
            chain_id=chain.deployment.chain_id,
            market=chain.deployment.market,
            job_id=job_id,
            spec_hash=spec.hash(),
        )
        response = agent.http.request(
            "PUT", f"/jobs/{job_id}/spec", spec.canonical_bytes(), {"Authorization": signed.to_header()}
        )
        assert response.status == 202, response.body
    return ids


def fetch_usage(chain: Chain, agent: Agent, job_id: int, status: dict) -> UsageRecord:
    """The finished job's result and usage, checked against the hashes of its status."""
    signed = sign_request(
        chain.client,
        action="get-result",
        chain_id=chain.deployment.chain_id,
        market=chain.deployment.market,
        job_id=job_id,
    )
    response = agent.http.request("GET", f"/jobs/{job_id}/result", headers={"Authorization": signed.to_header()})
    assert response.status == 200, response.body
    ResultBundle.parse(response.body).verify(bytes.fromhex(status["result_hash"][2:]))
    raw = agent.http.request("GET", f"/jobs/{job_id}/usage").body
    assert "0x" + keccak(raw).hex() == status["evidence_hash"]
    usage = UsageRecord.from_json(raw)
    assert usage.job_id == job_id and usage.complete
    return usage


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda sig: sig.name)
def test_jobs_across_an_agent_stopped_with_a_signal(tmp_path, anvil_binary, sig):
    with AnvilNode(anvil_binary, log_path=tmp_path / "anvil.log") as node:
        chain = build_chain(connect(node.url), provider_gpus=3)  # the three jobs run at once
        agent = Agent(tmp_path, node.url, chain.deployment.write(tmp_path / "deployment.json"))
        try:
            agent.start("first")
            ids = send_specs(chain, agent, {name: released_spec(name) for name in ("long", "short", "vanishing")})
            wait_for(
                lambda: all(agent.status(job_id)["state"] == "running" for job_id in ids.values()), 30, "the jobs run"
            )
            started_at = {name: agent.status(job_id)["started_at"] for name, job_id in ids.items()}
            time.sleep(1.0)  # metered a while by the first agent

            assert agent.signal(sig) == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
            down_at = time.monotonic()
            if sig != signal.SIGKILL:
                assert "stopping (jobs keep running)" in agent.log_path.read_text()
            short = agent.jobs / f"job-{ids['short']}"
            agent.release(ids["short"])
            wait_for(lambda: (short / "exit_status").exists(), 30, "the short job ends while the agent is down")
            os.killpg(agent.pid_of(ids["vanishing"]), signal.SIGKILL)
            time.sleep(max(0.0, down_at + 3.0 - time.monotonic()))  # down at least 3 s

            agent.start("second")
            logs = agent.log_path.read_text()
            assert "recovered: 1 followed again, 1 ended while the agent was down, 0 started, 1 lost" in logs, logs
            # Ended while the agent was down: finished, its exit code kept, result and usage served.
            ended = agent.status(ids["short"])
            assert (ended["state"], ended["exit_code"], ended["timed_out"]) == ("finished", 0, False), ended
            usage = fetch_usage(chain, agent, ids["short"], ended)
            end_time = (short / "exit_status").stat().st_mtime
            assert ended["finished_at"] == pytest.approx(end_time, abs=1e-6)
            assert abs(usage.summary.wall_seconds - (end_time - started_at["short"])) < 1.0
            # Vanished while the agent was down: lost.
            lost = agent.status(ids["vanishing"])
            assert lost["state"] == "lost" and "no exit status" in lost["detail"], lost
            # Still running: followed to its end, metered from its real start.
            assert agent.status(ids["long"])["state"] == "running"
            released_at = agent.release(ids["long"])
            wait_for(lambda: agent.status(ids["long"])["state"] != "running", 30, "the long job finishes")
            done = agent.status(ids["long"])
            assert (done["state"], done["exit_code"]) == ("finished", 0), done
            usage = fetch_usage(chain, agent, ids["long"], done)
            assert usage.summary.wall_seconds >= released_at - started_at["long"] - 1.0  # not from the restart
            assert usage.summary.wall_seconds <= time.time() - started_at["long"] + 1.0  # never more than passed
            assert agent.signal(signal.SIGTERM) == 0
        finally:
            agent.cleanup()
