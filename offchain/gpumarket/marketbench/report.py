"""The benchmark's report: bench/market.json, and bench/market.png (cost per job against N).

The JSON holds the machine, the settings, every definition (gpumarket.marketbench.measurements
and load), and per number of jobs the figures of each settlement mode (``unbatched``, and
``batched`` when the oracles can batch: ``batched`` is null with ``batched_reason`` otherwise).
``summary`` repeats the headline figures per mode and N, as the plot draws them.

The plot (matplotlib, drawn without a display) has one panel per cost, each per job against
the number of jobs on a log axis: the oracles' CPU milliseconds, their memory, the latency
from a job's end to its settlement (p50 and p99), the settlement gas, the job loop's polls
per second, and the share of owed heartbeats that came late or not at all.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from gpumarket.marketbench.harness import MarketBenchError

__all__ = ["DEFINITIONS", "machine", "plot", "require_matplotlib", "summary", "write_json"]

DEFINITIONS = {
    "oracle_cpu_ms_per_job": "user+system CPU of the three oracle processes (/proc/<pid>/stat) from the first "
    "create_job to the last JobSettled seen (plus three follower polls), summed, over the jobs",
    "oracle_cpu_ms_per_job_net_of_idle": "the same less what the three oracles spend idle (measured over idle_s "
    "before the load: their loops and followers) over the same window; null when that exceeds the total (the "
    "idle loops took what the load left of a saturated machine and cannot be subtracted out)",
    "oracle_rss_peak_mb_per_job": "the largest VmRSS sampled every 0.5 s of each oracle, summed, over the jobs "
    "(the processes are started fresh before each load)",
    "oracle_rss_growth_kb_per_job": "(summed peak VmRSS - summed VmRSS at the load's start) over the jobs",
    "latency_s": "from the job's end on its agent (finished_at) to the wall-clock moment a get_logs poll (every "
    "0.25 s) first saw its JobSettled; p50/p99 by linear interpolation",
    "end_to_quorum_end_challenge_s": "from the job's end to when the threshold-th oracle's end challenge was "
    "answered with work (the agents' prover queue: every provider here shares this machine's prover)",
    "quorum_end_challenge_to_settlement_s": "from then to JobSettled seen: the oracles' own part (usage record, "
    "decide, sign, gather the quorum, submit; with batching, the wait for the batch)",
    "gas_per_job": "gasUsed of the distinct transactions that emitted the jobs' JobSettled, over the jobs",
    "oracle_gas_per_job": "gasUsed of every transaction the oracles' senders sent during the load (reverted "
    "ones included), over the jobs",
    "heartbeats": "per oracle and job: heartbeat k is owed at d_1 = the job's start, d_(k+1) = t_k + "
    "heartbeat_interval_s (t_k its record's time, or d_k when missed), while d_k <= the job's end - grace; a "
    "heartbeat recorded in [d_k, d_k + interval) answers it, late when after d_k + grace; none: missed. grace = "
    "job_poll_interval_s + late_grace_s (heartbeats ride on polls; the record's time is the judgement's end). "
    "unanswered: heartbeat records with verdict 'no answer'",
    "polls_per_s": "GET /jobs/<id>/status requests the agents answered (the three oracles' polls), over the "
    "load (first create_job to last JobSettled seen)",
    "job_steps_per_s": "the oracles' job-loop steps (gpumarket_oracle_job_steps_total, every action), summed, "
    "over the load",
    "oracle_max_lag_s": "the largest job_loop.lag_s of the oracles' /health, sampled every 0.5 s",
}


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kb = None
    try:
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1) if memory_kb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_end": list(os.getloadavg()),
    }


def require_matplotlib() -> None:
    """Raises MarketBenchError, saying how to install it, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MarketBenchError(
            "the market benchmark draws bench/market.png with matplotlib, which is not installed: "
            "pip install -c requirements.lock matplotlib (it comes with the dev extra: make venv)"
        ) from None


HEADLINES = (
    "oracle_cpu_ms_per_job",
    "oracle_cpu_ms_per_job_net_of_idle",
    "oracle_rss_peak_mb_per_job",
    "oracle_rss_growth_kb_per_job",
    "polls_per_s",
    "job_steps_per_s",
    "oracle_max_lag_s",
)


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """mode -> N -> the headline figures."""
    modes: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        for mode in ("unbatched", "batched"):
            figures = run.get(mode)
            if not figures:
                continue
            heartbeats = figures["heartbeats"]
            modes.setdefault(mode, {})[str(run["jobs"])] = {
                **{name: figures[name] for name in HEADLINES},
                "latency_p50_s": figures["latency_s"]["p50"],
                "latency_p99_s": figures["latency_s"]["p99"],
                "oracle_part_p50_s": figures["quorum_end_challenge_to_settlement_s"]["p50"],
                "rss_growth_mb_per_job": figures["oracle_rss_growth_kb_per_job"] / 1024,
                "gas_per_job": figures["gas"]["gas_per_job"],
                "oracle_gas_per_job": figures["gas"]["oracle_gas_per_job"],
                "heartbeats_owed": heartbeats["owed"],
                "heartbeats_late": heartbeats["late"],
                "heartbeats_missed": heartbeats["missed"],
            }
    return modes


def _clean(value: Any) -> Any:
    """NaN and infinities as null (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(report), indent=2, allow_nan=False) + "\n")


_PANELS = (
    ("oracle CPU per job (ms)", ("oracle_cpu_ms_per_job", "oracle_cpu_ms_per_job_net_of_idle"), ("all", "net of idle")),
    ("oracle memory per job (MB)", ("oracle_rss_peak_mb_per_job", "rss_growth_mb_per_job"), ("peak / N", "growth / N")),
    (
        "end to settlement (s)",
        ("latency_p50_s", "latency_p99_s", "oracle_part_p50_s"),
        ("p50", "p99", "oracles' part p50"),
    ),
    ("settlement gas per job", ("gas_per_job",), ("settling txs",)),
    ("status polls per second (3 oracles)", ("polls_per_s",), ("polls",)),
    ("heartbeats late or missed (share of owed)", ("heartbeats_bad_share",), ("late + missed",)),
)


def plot(report: dict[str, Any], path: Path) -> None:
    """Draws the report's summary: cost per job against the number of jobs (module docstring)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = report["summary"]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    styles = {"unbatched": "-", "batched": "--"}
    for axis, (title, keys, labels) in zip(axes.flat, _PANELS, strict=True):
        for mode, by_n in modes.items():
            ns = sorted(by_n, key=int)
            for series, (key, label) in enumerate(zip(keys, labels, strict=True)):
                values = []
                for n in ns:
                    figures = by_n[n]
                    if key == "heartbeats_bad_share":
                        owed = figures["heartbeats_owed"]
                        bad = figures["heartbeats_late"] + figures["heartbeats_missed"]
                        values.append(bad / owed if owed else 0.0)
                    else:
                        value = figures[key]
                        values.append(math.nan if value is None else float(value))
                axis.plot(
                    [int(n) for n in ns],
                    values,
                    linestyle=styles.get(mode, ":"),
                    color=f"C{series}",
                    marker="o" if mode == "unbatched" else "s",
                    label=f"{label}, {mode}",
                )
        axis.set_xscale("log")
        axis.set_ylim(bottom=0)
        axis.set_xlabel("concurrent jobs")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small")
    cores = report["machine"]["cores"]
    figure.suptitle(
        f"gpumarket bench market: anvil, 3 oracles, simulated agents on one {cores}-core machine "
        f"({report['settings']['job_seconds']:g} s jobs, heartbeat every "
        f"{report['settings']['oracle']['heartbeat_interval_s']:g} s)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
