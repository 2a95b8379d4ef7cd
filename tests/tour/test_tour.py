"""docs/tour.md as a user runs it: its `sh` blocks, in order, in one bash, on free ports.

The tour starts anvil, deploys, runs three oracles and a provider in the background and walks
a client's job to settlement; the script fails on the first command that fails (set -e), so the
test asserts that it exits 0 and that the job it ran settled COMPLETED.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, find_anvil

REPO = Path(__file__).resolve().parents[2]
TOUR = REPO / "docs" / "tour.md"


def tour_script() -> str:
    blocks = re.findall(r"^```sh\n(.*?)^```$", TOUR.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 5, "docs/tour.md lost its sh blocks"
    return "set -euo pipefail\n" + "\n".join(blocks)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    if find_anvil() is None:
        reason = f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE}); npm is missing here"
        print(reason)
        pytest.skip(reason)
    chain, provider, dashboard, oracle = free_ports(4)
    # The oracles take three consecutive ports from ORACLE_PORT: find a free run of three.
    while any(p in (chain, provider, dashboard) for p in range(oracle, oracle + 3)) or not all(
        _is_free(p) for p in range(oracle, oracle + 3)
    ):
        oracle = free_ports(1)[0]
    env = {
        **os.environ,
        "CHAIN_PORT": str(chain),
        "PROVIDER_PORT": str(provider),
        "ORACLE_PORT": str(oracle),
        "DASHBOARD_PORT": str(dashboard),
        # Relative, as the tour's default ("tour") is: the tour makes it absolute itself.
        "TOUR": os.path.relpath(tmp_path, REPO),
        "GPUMARKET_CONFIG": "",
    }
    script = tmp_path / "tour.sh"
    script.write_text(tour_script())
    process = subprocess.Popen(
        ["bash", str(script)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail("the tour did not finish in 7 minutes:\n" + output[-4000:] + _logs(tmp_path))
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)  # whatever the tour left running
        except ProcessLookupError:
            pass
    assert process.returncode == 0, output[-4000:] + _logs(tmp_path)
    job_id = json.loads((tmp_path / "submitted.json").read_text())["job_id"]
    assert f"job {job_id}: chain COMPLETED" in output
    assert re.search(rf"job {job_id}: result 0x[0-9a-f]{{64}} verified", output), output[-2000:]
    assert f"/jobs/{job_id} shows job {job_id} COMPLETED" in output


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _logs(folder: Path) -> str:
    return "".join(f"\n--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted(folder.glob("*.log")))
