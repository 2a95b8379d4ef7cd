"""`gpumarket soak`, small: 9 real jobs on anvil with 3 oracles and 3 honest providers (each a
process), 2 busy loops, agents and oracles killed and restarted (the schedule's first two kills
are one agent and one oracle with different signals), and the node restarted once.

No honest provider may be slashed (or turned away at registration), no payment may be stuck,
the books must balance, every job must end, and the report must hold every field. A failure
prints the report's problems with the oracles' reasons, and the working directory with every
service's log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.soak

JOBS = 9
TOP_LEVEL_FIELDS = {
    "ok",
    "problems",
    "warnings",
    "seed",
    "machine",
    "busy_processes",
    "duration_s",
    "settings",
    "jobs_requested",
    "jobs_run",
    "outcomes",
    "honest_slashes",
    "slashes",
    "stuck_payments",
    "stuck",
    "conservation",
    "settle_latency_s",
    "results",
    "kills",
    "node_restart",
    "unplanned_exits",
    "failed_jobs",
    "hardware_rejections",
    "providers_left_out",
    "jobs",
    "workdir",
}


def _explain(report: dict) -> str:
    lines = [*report["problems"], *report["warnings"]]
    for name, left_out in report["providers_left_out"].items():
        lines += [f"{name} left out: {left_out['why']}", *(f"    {reason}" for reason in left_out["reasons"])]
    for job in report["failed_jobs"]:
        lines += [
            f"FAILED job {job['job_id']} ({job['provider']}, agent {job['agent_state']}: {job['agent_detail']})",
            *(f"    {reason}" for reason in job["reasons"]),
        ]
    return "\n".join(lines) + f"\nlogs: {report['workdir']}"


def _services_left(workdir: Path) -> list[str]:
    """Command lines of processes still running with the soak's working directory in them."""
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in text:
            left.append(text)
    return left


def test_small_soak_slashes_no_honest_provider_and_strands_no_payment(tmp_path: Path, anvil_binary: Path) -> None:
    out, workdir = tmp_path / "soak.json", tmp_path / "work"
    env = {**os.environ, "PATH": f"{anvil_binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpumarket",
            "soak",
            "--jobs",
            str(JOBS),
            "--concurrency",
            "3",
            "--busy",
            "2",
            "--seed",
            "3",
            "--kill-interval-s",
            "10",
            "--drain-timeout-s",
            "150",
            "--out",
            str(out),
            "--workdir",
            str(workdir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
    )
    assert completed.returncode in (0, 1), completed.stdout[-3000:] + completed.stderr[-5000:]
    assert _services_left(workdir) == []  # whatever happened, nothing of the soak is left running
    report = json.loads(out.read_text())
    assert json.loads(completed.stdout) == report  # --json prints what --out holds

    assert TOP_LEVEL_FIELDS <= set(report), TOP_LEVEL_FIELDS - set(report)
    assert set(report["outcomes"]) == {"COMPLETED", "FAILED", "EXPIRED", "CANCELLED", "unfinished"}
    assert set(report["settle_latency_s"]) == {"basis", "count", "excluded", "p50", "p90", "p99", "max"}
    assert set(report["kills"]) == {"total", "by_service", "by_signal", "log"}
    assert report["machine"]["cores"] == os.cpu_count() and report["busy_processes"] == 2 and report["seed"] == 3
    assert report["duration_s"] > 0 and report["workdir"] == str(workdir)

    # What must never happen.
    assert report["honest_slashes"] == 0, _explain(report)
    assert report["stuck_payments"] == 0, _explain(report)
    assert report["conservation"]["ok"], _explain(report)
    assert report["providers_left_out"] == {} and report["hardware_rejections"] == [], _explain(report)
    # Every job ended, and the settled ones were timed.
    assert report["jobs_run"] == JOBS and report["outcomes"]["unfinished"] == 0, _explain(report)
    assert sum(report["outcomes"].values()) == JOBS
    settled = report["outcomes"]["COMPLETED"] + report["outcomes"]["FAILED"]
    assert report["settle_latency_s"]["count"] + report["settle_latency_s"]["excluded"] == settled

    # The faults happened: the node restart, and an agent and an oracle killed with different signals.
    restart = report["node_restart"]
    assert restart is not None and restart["error"] is None and restart["back_after_s"] is not None, restart
    kills = report["kills"]["log"]
    agent_signals = {kill["signal"] for kill in kills if kill["kind"] == "agent" and kill["error"] is None}
    oracle_signals = {kill["signal"] for kill in kills if kill["kind"] == "oracle" and kill["error"] is None}
    assert any(a != o for a in agent_signals for o in oracle_signals), kills
    assert (
        report["kills"]["total"] == len(kills) == sum(sum(s.values()) for s in report["kills"]["by_service"].values())
    )

    assert report["ok"] and completed.returncode == 0, _explain(report)
