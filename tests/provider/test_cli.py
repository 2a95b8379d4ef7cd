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

from gpumarket.agentapi.auth import sign_request
from gpumarket.agentapi.result import ResultBundle
from gpumarket.cli import main

from .support import CHAIN_ID, MARKET, Http, python_spec


def start_agent(tmp_path: Path, name: str, provider: str, *options: str) -> tuple[subprocess.Popen, Http]:
    ready = tmp_path / f"{name}.ready"
    command = [
        sys.executable, "-m", "gpumarket", "provider", "serve-api",
        "--db", str(tmp_path / "agent.sqlite"), "--workdir", str(tmp_path / "jobs"),
        "--port", "0", "--address", provider, "--chain-id", str(CHAIN_ID), "--market", MARKET,
        "--jobs-file", str(tmp_path / "jobs.json"), "--backend", "numpy", "--meter-interval", "0.05",
        "--ready-file", str(ready), "--runtime", "process", *options,
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
    # The survivor runs until the test lets it end, however long a loaded machine takes to restart the agent.
    go = tmp_path / "go"
    survivor = python_spec(
        f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
        "open('out.txt', 'w').write('survived')",
        outputs=["out.txt"],
    )
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
        go.touch()
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


def test_a_killed_container_agent_adopts_its_container_and_removes_the_ones_it_no_longer_owns(
    tmp_path,
    client_account,
    provider_account,
    podman_env,
    python_image,
):
    from gpumarket.agentapi.spec import ContainerJobSpec, ContainerLimits
    from gpumarket.containers.engine import PodmanEngine
    from gpumarket.provider.runtime import container_owner

    limits = ContainerLimits(max_seconds=60, max_output_bytes=4096, max_memory_bytes=256 << 20)
    survivor = ContainerJobSpec(
        image=python_image,
        gpu_count=1,
        limits=limits,
        outputs=["out.txt"],
        command=["python3", "-c", "import time; time.sleep(3); open('out.txt', 'w').write('survived')"],
    )
    table = {
        "jobs": [
            {
                "job_id": 1,
                "client": client_account.address,
                "provider": provider_account.address,
                "state": "RUNNING",
                "spec_hash": "0x" + survivor.hash().hex(),
                "gpu_count": 1,
            }
        ]
    }
    (tmp_path / "jobs.json").write_text(json.dumps(table))
    container_options = ("--runtime", "container", "--containers-conf", podman_env["CONTAINERS_CONF"])
    engine = PodmanEngine(containers_conf=Path(podman_env["CONTAINERS_CONF"]))
    owner = container_owner(provider_account.address, tmp_path / "jobs")
    processes: list[subprocess.Popen] = []
    try:
        first, http = start_agent(tmp_path, "first", provider_account.address, *container_options)
        processes.append(first)
        signed = sign_request(
            client_account, action="put-spec", chain_id=CHAIN_ID, market=MARKET, job_id=1, spec_hash=survivor.hash()
        )
        response = http.request(
            "PUT", "/jobs/1/spec", survivor.canonical_bytes(), {"Authorization": signed.to_header()}
        )
        assert response.status == 202, response.body
        deadline = time.monotonic() + 30
        while status(http, 1)["state"] != "running":
            assert time.monotonic() < deadline, status(http, 1)
            time.sleep(0.1)
        first.kill()  # SIGKILL: its container runs on under podman's conmon
        first.wait(10)
        # A container of this agent's for a job its database never held: the next agent removes it.
        stray = subprocess.run(
            [
                "podman",
                "run",
                "-d",
                "--name",
                f"stray-{owner[-12:]}",
                "--label",
                f"gpumarket.owner={owner}",
                "--label",
                "gpumarket.job=99",
                python_image,
                "sleep",
                "120",
            ],
            env={**os.environ, **podman_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stray.returncode == 0, stray.stderr

        second, http = start_agent(tmp_path, "second", provider_account.address, *container_options)
        processes.append(second)
        assert [c.labels.get("gpumarket.job") for c in engine.list(f"gpumarket.owner={owner}")] in ([], ["1"])
        deadline = time.monotonic() + 30
        while (done := status(http, 1))["state"] == "running":
            assert time.monotonic() < deadline, done
            time.sleep(0.1)
        assert (done["state"], done["exit_code"], done["runtime"]) == ("finished", 0, "container"), done
        signed = sign_request(client_account, action="get-result", chain_id=CHAIN_ID, market=MARKET, job_id=1)
        bundle = ResultBundle.parse(
            http.request("GET", "/jobs/1/result", headers={"Authorization": signed.to_header()}).body
        )
        assert bundle.contents["outputs/out.txt"] == b"survived"
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for container in engine.list(f"gpumarket.owner={owner}"):
            engine.remove(container.id)
