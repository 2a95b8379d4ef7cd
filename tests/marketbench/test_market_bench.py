"""`gpumarket bench market`, smallest: 3 concurrent jobs on anvil with three oracle processes and
the simulated agents (real HTTP, real challenges, real signatures and transactions), each
settlement mode. Every job must settle COMPLETED, bench's JSON must hold every field with sane
values, and the plot must be written.

Minutes of a 2-core machine (the oracles' start, end and heartbeat challenges of every job are
proven by this machine's one prover, twice: unbatched and batched), so it carries the `soak`
marker: `make test-soak` runs it, `make test` leaves it out.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.soak

JOBS = 3
MODE_FIELDS = {
    "jobs",
    "settled",
    "outcomes",
    "window_s",
    "phases_s",
    "oracle_cpu_s",
    "oracle_cpu_ms_per_job",
    "oracle_idle_cpu_s_per_s",
    "oracle_cpu_ms_per_job_net_of_idle",
    "oracle_rss_start_mb",
    "oracle_rss_peak_mb",
    "oracle_rss_peak_mb_per_job",
    "oracle_rss_growth_kb_per_job",
    "oracle_max_lag_s",
    "latency_s",
    "end_to_quorum_end_challenge_s",
    "quorum_end_challenge_to_settlement_s",
    "gas",
    "heartbeats",
    "polls_per_s",
    "job_steps_per_s",
    "oracles",
    "agents",
    "anvil",
    "mode",
}


def test_three_jobs_settle_in_both_modes_and_the_report_holds_every_figure(anvil_binary: Path, tmp_path: Path) -> None:
    out, workdir = tmp_path / "bench", tmp_path / "work"
    command = [
        sys.executable, "-m", "gpumarket", "bench", "market",
        "--jobs", str(JOBS), "--out-dir", str(out), "--workdir", str(workdir),
        "--job-seconds", "10", "--gpus-per-provider", str(JOBS), "--idle-seconds", "2",
        "--batch-size", "8", "--batch-max-age", "2",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{anvil_binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}\n(logs in {workdir})"

    report = json.loads((out / "market.json").read_text())
    png = out / "market.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert report["complete"] is True
    assert report["machine"]["cores"] >= 1 and report["machine"]["python"]
    assert report["settings"]["jobs"] == [JOBS] and report["settings"]["oracle"]["heartbeat_interval_s"] == 60
    assert report["batched"] == {"name": "batched", "batch_size": 8, "batch_max_age_s": 2.0}
    assert report["batched_reason"] is None
    assert set(report["definitions"]) >= {"latency_s", "gas_per_job", "heartbeats", "oracle_cpu_ms_per_job"}
    (run,) = report["runs"]
    assert run["jobs"] == JOBS and run["providers"] == 1 and run["setup_s"] > 0
    for mode in ("unbatched", "batched"):
        figures = run[mode]
        assert set(figures) >= MODE_FIELDS, MODE_FIELDS - set(figures)
        assert figures["settled"] == JOBS and figures["outcomes"] == {"COMPLETED": JOBS}
        assert figures["oracle_cpu_s"] > 0 and figures["oracle_cpu_ms_per_job"] > 0
        net = figures["oracle_cpu_ms_per_job_net_of_idle"]
        assert net is None or 0 < net <= figures["oracle_cpu_ms_per_job"]
        assert 30 < figures["oracle_rss_peak_mb"] / 3 < 2_000  # each oracle: a Python process with web3
        assert figures["oracle_rss_peak_mb"] >= figures["oracle_rss_start_mb"]
        latency = figures["latency_s"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 900
        quorum_part = figures["quorum_end_challenge_to_settlement_s"]
        assert 0 < quorum_part["p50"] <= latency["p99"]
        gas = figures["gas"]
        assert gas["settling_transactions"] >= 1 and 30_000 < gas["gas_per_job"] < 1_000_000
        assert gas["oracle_gas"] >= gas["settling_gas"] and gas["oracle_transactions"] >= gas["settling_transactions"]
        beats = figures["heartbeats"]
        assert beats["owed"] == beats["made"] + beats["missed"] and 0 <= beats["late"] <= beats["made"]
        assert beats["owed"] == 3 * JOBS  # 10 s jobs: each oracle owes each its first heartbeat, no second
        assert len(beats["per_oracle"]) == 3
        assert figures["polls_per_s"] > 0 and figures["job_steps_per_s"] > 0
        assert set(figures["oracles"]) == {"oracle-0", "oracle-1", "oracle-2"}
        agents = figures["agents"]
        assert agents["challenges"] >= 3 * 2 * JOBS  # at least every oracle's start and end of every job
        assert 0 < agents["prover_busy_share"] <= 1.0 + 1e-6
    assert run["batched"]["gas"]["jobs_per_settling_transaction"] >= 1
    summary = report["summary"]
    assert set(summary) == {"unbatched", "batched"}
    for by_n in summary.values():
        for value in by_n[str(JOBS)].values():
            assert value is None or (isinstance(value, int | float) and math.isfinite(value))
