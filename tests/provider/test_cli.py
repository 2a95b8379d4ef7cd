"""``gpumarket provider serve-api`` as a real process: it serves, it is killed with SIGKILL mid-job,
and a restart on the same database follows the job that survived and reports the killed one lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from gpumarket.cli import main
from gpumarket.provider.auth import sign_request
from gpumarket.provider.result import ResultBundle

from .support import CHAIN_ID, MARKET, Http, python_spec


def start_agent(tmp_path: Path, name: str, provider: str) -> tuple[subprocess.Popen, Http]:
    ready = tmp_path / f"{name}.ready"
    command = [
        sys.executable, "-m", "gpumarket", "provider", "serve-api",
        "--db", str(tmp_path / "agent.sqlite"), "--workdir", str(tmp_path / "jobs"),
        "--port", "0", "--address", provider, "--chain-id", str(CHAIN_ID), "--market", MARKET,
        "--jobs-file", str(tmp_path / "jobs.json"), "--backend", "numpy", "--meter-interval", "0.05",
        "--ready-file", str(ready),
    ]  # fmt: skip
    with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own copy of the fd
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert process.poll() is None, (tmp_path / f"{name}.log").read_text()
        assert time.monotonic() < deadline, "the agent did not start within 30 s"
        time.sleep(0.05)
    url = json.loads(ready.read_text())["url"]
    host, port = url.removeprefix("http://").split(":")
    return process, Http(host, int(port))


def status(http: Http, job_id: int) -> dict:
    return http.request("GET", f"/jobs/{job_id}/status").json()


def test_the_provider_group_is_registered():
    result = CliRunner().invoke(main, ["provider", "serve-api", "--help"])
    assert result.exit_code == 0 and "--jobs-file" in result.output and "--workdir" in result.output


def test_kill_and_restart_resumes_live_jobs_and_reports_dead_ones_lost(tmp_path, client_account, provider_account):
    survivor = python_spec("import time; time.sleep(2.0); open('out.txt', 'w').write('survived')", outputs=["out.txt"])
    victim = python_spec("import time; time.sleep(60)")
    table = {
        "jobs": [
            {"job_id": job_id, "client": client_account.address, "provider": provider_account.address,
             "state": "RUNNING", "spec_hash": "0x" + spec.hash().hex(), "gpu_count": 1}
            for job_id, spec in ((1, survivor), (2, victim))
        ]
    }  # fmt: skip
    (tmp_path / "jobs.json").write_text(json.dumps(table))
    processes: list[subprocess.Popen] = []
    victim_pid = None
    try:
        first, http = start_agent(tmp_path, "first", provider_account.address)
        processes.append(first)
        assert http.healthy()
        for job_id, spec in ((1, survivor), (2, victim)):
            signed = sign_request(
                client_account,
                action="put-spec",
                chain_id=CHAIN_ID,
                market=MARKET,
                job_id=job_id,
                spec_hash=spec.hash(),
            )
            response = http.request(
                "PUT", f"/jobs/{job_id}/spec", spec.canonical_bytes(), {"Authorization": signed.to_header()}
            )
            assert response.status == 202, response.body
        assert status(http, 1)["state"] == status(http, 2)["state"] == "running"

        first.kill()  # SIGKILL: no chance to clean up
        first.wait(10)
        victim_pid = int((tmp_path / "jobs" / "job-2" / "pid").read_text())
        os.killpg(victim_pid, signal.SIGKILL)  # the job dies while no agent watches

        second, http = start_agent(tmp_path, "second", provider_account.address)
        processes.append(second)
        lost = status(http, 2)
        assert lost["state"] == "lost" and "gone" in lost["detail"]
        assert status(http, 1)["state"] == "running"
        deadline = time.monotonic() + 15
        while (done := status(http, 1))["state"] == "running":
            assert time.monotonic() < deadline, done
            time.sleep(0.1)
        assert (done["state"], done["exit_code"]) == ("finished", 0), done

        signed = sign_request(client_account, action="get-result", chain_id=CHAIN_ID, market=MARKET, job_id=1)
        response = http.request("GET", "/jobs/1/result", headers={"Authorization": signed.to_header()})
        assert response.status == 200, response.body
        bundle = ResultBundle.parse(response.body)
        bundle.verify(bytes.fromhex(done["result_hash"][2:]))
        assert bundle.contents["outputs/out.txt"] == b"survived"

        second.send_signal(signal.SIGTERM)
        assert second.wait(10) == 0
        logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
        assert "recovered: 1 followed again, 0 ended while the agent was down, 0 started, 1 lost" in logs
        assert client_account.key.hex().removeprefix("0x") not in logs
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for pid_file in (tmp_path / "jobs").glob("job-*/pid"):
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):  # already gone
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
