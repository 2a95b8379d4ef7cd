"""One soak run, start to end: busy loops, the market, the load and the faults, then the report.

    report = run_soak(SoakConfig(workdir=Path("soak-work"), jobs=200, seed=7), echo=print)

1. `busy` busy loops start (gpumarket.soak.busy): every service runs on a saturated machine.
2. The market comes up (gpumarket.soak.market): anvil keeping its state in the working
   directory, three oracles, three honest providers, each a process of the devnet's launcher.
3. The load (gpumarket.soak.load) runs `jobs` jobs while the fault injector
   (gpumarket.soak.faults) kills and restarts agents and oracles on the seeded schedule
   (gpumarket.soak.schedule) and restarts the node once half the jobs have been created.
4. Once every job ended (or the drain time is up), the injector stops, the client claims its
   refunds, and the report (gpumarket.soak.report) is read from the chain and the logs.
5. Whatever happened, the services and anvil are stopped and the busy loops killed.

The services' timings are the devnet's, except that an oracle waits `silent_after_s` =
the longest planned down time + RESTART_ALLOWANCE_S before it fails a silent agent: a killed
agent must be able to come back (stop, stay down, start a cold interpreter on a saturated
machine) without that being held against it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gpumarket.chain.keys import test_account
from gpumarket.client.jobs import JobClient
from gpumarket.demo.devnet import ProcessLauncher
from gpumarket.demo.launcher import ServiceTiming
from gpumarket.demo.story import CLIENT_ACCOUNT, COMMITTEE, Progress
from gpumarket.measure.classes import CPU_DEV
from gpumarket.soak.busy import BusyLoops
from gpumarket.soak.faults import FaultInjector
from gpumarket.soak.load import JobStream, LoadPlan
from gpumarket.soak.market import JOB_MAX_DURATION_S, JOB_MAX_PRICE, SOAK_PROVIDERS, bring_up
from gpumarket.soak.report import STUCK_MARGIN_S, ReportInputs, SoakReport, build_report
from gpumarket.soak.schedule import FaultSchedule

__all__ = ["RESTART_ALLOWANCE_S", "SoakConfig", "run_soak", "soak_timing"]

# A killed agent's way back beyond its planned down time: up to a graceful stop, and a cold
# interpreter importing web3 and numpy while the busy loops hold every core (seconds each).
RESTART_ALLOWANCE_S = 30.0


def _default_busy() -> int:
    return 2 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class SoakConfig:
    workdir: Path  # must be empty or absent: anvil's state, the stores and the logs go there
    jobs: int = 200
    concurrency: int = 3  # jobs in flight; at most one per provider (gpumarket.soak.load)
    busy: int = field(default_factory=_default_busy)
    seed: int = 1
    kill_interval_s: float = 20.0
    min_down_s: float = 2.0
    max_down_s: float = 6.0
    open_every: int = 4
    accept_window_s: int = 60
    # After the last job is created, how long the jobs in flight may take to end. None: until
    # any job still running would be past the point where it counts as a stuck payment.
    drain_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.concurrency < 1 or self.busy < 0 or self.kill_interval_s <= 0:
            raise ValueError(f"invalid soak config: {self}")


def soak_timing(schedule: FaultSchedule) -> ServiceTiming:
    """The devnet's timings, with an oracle's silence window wide enough for a kill (see above)."""
    return replace(ServiceTiming(), silent_after_s=schedule.max_down_s + RESTART_ALLOWANCE_S)


def run_soak(config: SoakConfig, *, echo: Callable[[str], None]) -> SoakReport:
    """Run the soak (see the module docstring) and return its report."""
    started = time.monotonic()
    progress = Progress(echo)
    workdir = config.workdir
    agents, oracles = [role.name for role in SOAK_PROVIDERS], [f"oracle-{i}" for i in range(COMMITTEE)]
    # A previous run's chain, deployment or stores would be resumed, not started afresh.
    leftovers = [
        name for name in ("anvil-state.json", "deployment.json", *agents, *oracles) if (workdir / name).exists()
    ]
    if leftovers:
        raise FileExistsError(f"{workdir} holds a previous run ({', '.join(leftovers)}): use a fresh directory")
    workdir.mkdir(parents=True, exist_ok=True)
    schedule = FaultSchedule(
        agents=agents,
        oracles=oracles,
        seed=config.seed,
        kill_interval_s=config.kill_interval_s,
        min_down_s=config.min_down_s,
        max_down_s=config.max_down_s,
    )
    timing = soak_timing(schedule)
    gate = threading.Lock()  # the load's passes vs the node restart
    stop = threading.Event()  # set by the injector when it cannot go on
    launcher = ProcessLauncher(workdir, timing, chain_state=workdir / "anvil-state.json")
    with BusyLoops(config.busy), launcher:
        progress(f"{config.busy} busy loop(s) spinning on {os.cpu_count()} core(s); working directory {workdir}")
        soak = bring_up(launcher, client_mint=2 * config.jobs * JOB_MAX_PRICE * JOB_MAX_DURATION_S, echo=progress)
        plan = LoadPlan(
            jobs=config.jobs,
            concurrency=config.concurrency,
            max_price=JOB_MAX_PRICE,
            max_duration=JOB_MAX_DURATION_S,
            gpu_class=CPU_DEV.id,
            settle_grace_s=soak.settle_grace_s,
            open_every=config.open_every,
            accept_window_s=config.accept_window_s,
        )
        key = test_account(CLIENT_ACCOUNT)
        client = JobClient(
            soak.market.with_signer(key), key, poll_interval_s=plan.poll_interval_s, from_block=soak.deployment.block
        )
        stream = JobStream(
            client, {name: soak.address_of(name) for name in soak.verified}, plan, gate=gate, echo=progress
        )
        node_restart_at = max(1, config.jobs // 2)
        injector = FaultInjector(
            launcher,
            schedule,
            gate=gate,
            jobs_created=lambda: stream.created,
            node_restart_at_jobs=node_restart_at,
            started=started,
            abort=stop,
            echo=progress,
        )
        drain_s = config.drain_timeout_s
        if drain_s is None:  # a job accepted at the end of its accept window, run to its settle grace
            drain_s = plan.accept_window_s + plan.max_duration + soak.settle_grace_s + STUCK_MARGIN_S + 30
        progress(
            f"load: {config.jobs} job(s), {config.concurrency} in flight; "
            f"faults every ~{config.kill_interval_s:g} s (seed {config.seed}), "
            f"node restart at job {node_restart_at}; oracles fail an agent silent for {timing.silent_after_s:g} s"
        )
        injector.start()
        try:
            stream.run(stop, drain_deadline=_deadline_after(drain_s))
        finally:
            injector.stop()
        claimed = client.claim()
        progress(f"client claimed its refunds ({len(claimed)} token(s)); reading the report")
        settings = {
            "jobs": config.jobs,
            "concurrency": config.concurrency,
            "open_every": config.open_every,
            "kill_interval_s": config.kill_interval_s,
            "down_s": [config.min_down_s, config.max_down_s],
            "node_restart_at_jobs": node_restart_at,
            "accept_window_s": plan.accept_window_s,
            "max_duration_s": plan.max_duration,
            "settle_grace_s": soak.settle_grace_s,
            "drain_timeout_s": drain_s,
            "providers": list(soak.verified),
            "timing": asdict(timing),
        }
        return build_report(
            ReportInputs(
                seed=config.seed,
                busy_processes=config.busy,
                duration_s=time.monotonic() - started,
                settings=settings,
                soak_market=soak,
                stream=stream,
                injector=injector,
                workdir=workdir,
            )
        )


def _deadline_after(seconds: float) -> Callable[[], bool]:
    """A drain deadline: False until `seconds` after its first call, then True."""
    until: list[float] = []

    def over() -> bool:
        if not until:
            until.append(time.monotonic() + seconds)
        return time.monotonic() > until[0]

    return over
