"""The whole benchmark: for each number of jobs a market, a load per settlement mode, the report.

    report = run_bench(BenchConfig(jobs=(10, 100), out_dir=Path("bench")), echo=print)

For each N (smallest first) a fresh market comes up (gpumarket.marketbench.harness) with
``ceil(N / gpus_per_provider)`` providers, so that N one-GPU jobs run at once; then, for each
settlement mode (each job alone; in batches of ``batch_size`` when the oracles take
``--batch-size``), the oracles are restarted in that mode and one load of N jobs runs
(gpumarket.marketbench.load). The report (gpumarket.marketbench.report) is written after every
N, so a long run leaves what it finished; the plot is drawn from it each time.

The working directory (every service's log, the chain's, the stores) is a temporary one unless
``workdir`` is given; it is kept, and named in the error, when a run fails.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpumarket.marketbench.harness import (
    MarketHarness,
    MarketSettings,
    OracleTimings,
    SettlementMode,
    batching_available,
)
from gpumarket.marketbench.load import LoadSettings, run_load
from gpumarket.marketbench.report import DEFINITIONS, machine, plot, require_matplotlib, summary, write_json

__all__ = ["BenchConfig", "run_bench"]


@dataclass(frozen=True)
class BenchConfig:
    jobs: Sequence[int] = (10, 100, 1000)
    out_dir: Path = Path("bench")
    batch_size: int = 32
    batch_max_age_s: float = 10.0
    job_seconds: float = 30.0
    gpus_per_provider: int = 4
    floor_gops: int = 1
    prover_slots: int = 1
    oracle: OracleTimings = field(default_factory=OracleTimings)
    late_grace_s: float = 5.0
    idle_s: float = 5.0
    settle_timeout_s: float | None = None
    workdir: Path | None = None

    def settings_json(self) -> dict[str, Any]:
        settings = asdict(self)
        settings["out_dir"] = str(self.out_dir)
        settings["workdir"] = str(self.workdir) if self.workdir else None
        settings["jobs"] = list(self.jobs)
        settings["oracle"] = self.oracle.to_json()
        return settings


def _modes(config: BenchConfig) -> tuple[list[SettlementMode], str | None]:
    modes = [SettlementMode("unbatched")]
    if config.batch_size < 1:
        return modes, "--batch-size 0: batched settlement was not asked for"
    reason = batching_available()
    if reason is not None:
        return modes, reason
    return [*modes, SettlementMode("batched", config.batch_size, config.batch_max_age_s)], None


def run_bench(config: BenchConfig, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs every N and mode, writes ``out_dir``/market.json and market.png; returns the report."""
    if not config.jobs or min(config.jobs) < 1:
        raise ValueError("jobs: at least one count, each >= 1")
    require_matplotlib()
    modes, batched_reason = _modes(config)
    if batched_reason:
        echo(f"batched settlement not run: {batched_reason}")
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="gpumarket-bench-market-"))
    started = time.monotonic()
    report: dict[str, Any] = {
        "benchmark": "gpumarket bench market",
        "machine": machine(),
        "settings": config.settings_json(),
        "modes": [mode.to_json() for mode in modes],
        "batched": modes[1].to_json() if len(modes) > 1 else None,
        "batched_reason": batched_reason,
        "definitions": DEFINITIONS,
        "runs": [],
        "summary": {},
        "complete": False,
    }
    json_path, png_path = config.out_dir / "market.json", config.out_dir / "market.png"
    try:
        for n in sorted(config.jobs):
            run = _run_one(config, n, modes, workdir / f"jobs-{n}", echo)
            report["runs"].append(run)
            report["summary"] = summary(report["runs"])
            report["machine"] = machine()
            report["duration_s"] = time.monotonic() - started
            report["complete"] = len(report["runs"]) == len(config.jobs)
            write_json(report, json_path)
            plot(report, png_path)
            echo(f"N={n}: written to {json_path} and {png_path}")
    except BaseException:
        echo(f"the working directory (every service's log) is kept: {workdir}")
        raise
    if config.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _run_one(
    config: BenchConfig, n: int, modes: Sequence[SettlementMode], workdir: Path, echo: Callable[[str], None]
) -> dict[str, Any]:
    providers = math.ceil(n / config.gpus_per_provider)
    settings = MarketSettings(
        providers=providers,
        gpus_per_provider=config.gpus_per_provider,
        floor_gops=config.floor_gops,
        prover_slots=config.prover_slots,
        oracle=config.oracle.for_jobs(n),
    )
    load = LoadSettings(
        jobs=n,
        job_seconds=config.job_seconds,
        settle_timeout_s=config.settle_timeout_s,
        idle_s=config.idle_s,
        late_grace_s=config.late_grace_s,
    )
    echo(f"N={n}: a market of {providers} provider(s) x {config.gpus_per_provider} GPU(s) in {workdir}")
    run: dict[str, Any] = {
        "jobs": n,
        "providers": providers,
        "gpus_per_provider": config.gpus_per_provider,
        "oracle_timings": settings.oracle.to_json(),
    }
    with MarketHarness(workdir, settings, echo=lambda line: echo("  " + line)) as harness:
        harness.start()
        run["setup_s"] = harness.setup_seconds
        for mode in modes:
            harness.restart_oracles(mode)
            echo(f"  {mode.name}: oracles restarted; {n} jobs")
            figures = run_load(harness, load, echo=echo)
            figures["mode"] = mode.to_json()
            run[mode.name] = figures
            echo(
                f"  {mode.name}: every job COMPLETED; oracle CPU {figures['oracle_cpu_ms_per_job']:.0f} ms/job, "
                f"latency p50 {figures['latency_s']['p50']:.1f} s p99 {figures['latency_s']['p99']:.1f} s, "
                f"gas {figures['gas']['gas_per_job']:,.0f}/job, heartbeats late {figures['heartbeats']['late']} "
                f"missed {figures['heartbeats']['missed']} of {figures['heartbeats']['owed']}"
            )
    for name in ("unbatched", "batched"):
        run.setdefault(name, None)
    return run
