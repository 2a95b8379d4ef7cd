"""`gpumarket oracle run` processes on anvil: the job's designated submitter is SIGKILLed the
moment its decision is signed (between signing and submitting, or just after submitting: the
race is the chain's), then started again with the same command. The job settles exactly once,
with the report the killed oracle first signed, and that oracle never signs another."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.connection import connect
from gpumarket.chain.keys import test_account, test_oracle
from gpumarket.chain.models import JobState
from gpumarket.oracle.settlement import submission_rank

from .conftest import busy_spec, deploy_world, free_port, wait_for
from .test_job_loop import settled_event


def oracle_command(anvil: AnvilNode, deployment: Path, folder: Path, i: int, ports: list[int]) -> list[str]:
    peers = [arg for port in ports for arg in ("--peer", f"http://127.0.0.1:{port}")]
    return [
        sys.executable,
        "-m",
        "gpumarket",
        "oracle",
        "run",
        "--rpc",
        anvil.url,
        "--deployment",
        str(deployment),
        "--key",
        f"test-oracle:{i}",
        "--sender",
        f"test-account:{5 + i}",
        "--db",
        str(folder / f"oracle{i}.sqlite"),
        "--port",
        str(ports[i]),
        *peers,
        "--confirmations",
        "0",
        "--poll-interval",
        "0.1",
        "--tick-interval",
        "0.1",
        "--heartbeat-interval",
        "2",
        "--job-poll-interval",
        "0.3",
        "--silent-after",
        "8",
        "--fallback-delay",
        "3",
        "--no-answer-retry",
        "0.5",
        "--ready-file",
        str(folder / f"oracle{i}.ready"),
    ]


def signed_digest(db: Path, job_id: int) -> bytes | None:
    """The oracle's signed decision for the job, read from its store while it runs (WAL)."""
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        row = connection.execute(
            "SELECT digest FROM job_decisions WHERE job_id = ? AND signature IS NOT NULL", (str(job_id),)
        ).fetchone()
    return None if row is None else bytes(row[0])


def unbacked_signatures(db: Path, signer: str) -> set[bytes]:
    """Digests this oracle signed that are not one of its committed decisions (must be none)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        signed = {bytes(r[0]) for r in connection.execute("SELECT digest FROM signatures WHERE signer = ?", (signer,))}
        decided = {
            bytes(r[0])
            for table in ("job_decisions", "hardware_decisions")
            for r in connection.execute(f"SELECT digest FROM {table}")
        }
    return signed - decided


def test_a_killed_oracle_process_restarts_and_the_job_settles_once(anvil: AnvilNode, tmp_path: Path) -> None:
    world = deploy_world(connect(anvil.url), tmp_path)
    deployment = world.deployment.write(tmp_path / "deployment.json")
    ports = [free_port() for _ in range(3)]
    logs = [open(tmp_path / f"oracle{i}.log", "ab") for i in range(3)]
    processes = [
        subprocess.Popen(
            oracle_command(anvil, deployment, tmp_path, i, ports), stdout=logs[i], stderr=subprocess.STDOUT
        )
        for i in range(3)
    ]
    try:
        wait_for(lambda: all((tmp_path / f"oracle{i}.ready").exists() for i in range(3)), 60, "oracles up")
        provider = world.start_provider(test_account(1))
        client = world.client(test_account(4))
        market = world.market()
        job_id = market.job_count() + 1
        members = market.members()
        designated = next(i for i in range(3) if submission_rank(job_id, members, test_oracle(i).address) == 0)
        db = tmp_path / f"oracle{designated}.sqlite"
        assert world.run_job(client, provider.address, busy_spec(2.0)) == job_id

        first = wait_for(
            lambda: signed_digest(db, job_id), 90, "the designated oracle's signed decision", interval=0.01
        )
        processes[designated].send_signal(signal.SIGKILL)
        processes[designated].wait(timeout=10)
        processes[designated] = subprocess.Popen(
            oracle_command(anvil, deployment, tmp_path, designated, ports),
            stdout=logs[designated],
            stderr=subprocess.STDOUT,
        )

        job = world.wait_terminal(job_id, timeout_s=90)
        assert job.state == JobState.COMPLETED
        event = settled_event(world, job_id)
        assert signed_digest(db, job_id) == first  # the restarted oracle kept its decision
        # Every signature the killed-and-restarted oracle holds of its own is over a committed
        # decision, and the job has one decision (the store's key), so no second report exists.
        assert unbacked_signatures(db, test_oracle(designated).address) == set()
        assert event.gpu_seconds >= 1
        assert processes[designated].poll() is None  # and it keeps running after the restart
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for provider in world.providers:
            provider.close(stop_jobs=True)
        for log in logs:
            log.close()
