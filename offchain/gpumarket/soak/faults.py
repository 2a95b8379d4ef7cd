"""The fault injector: plays the FaultSchedule against the running services, restarts the node
once (when `node_restart_at_jobs` jobs have been created: in the middle of the load), and
restarts any service that exits on its own, as a supervisor would (at most
MAX_UNPLANNED_RESTARTS times per service: one that keeps dying is left down, and reported).

    injector = FaultInjector(launcher, schedule, gate=gate, jobs_created=lambda: stream.created,
                             node_restart_at_jobs=100, started=t0, abort=stop, echo=progress)
    injector.start()
    ...                                    # the load runs
    injector.stop()                        # finishes the kill in progress, then returns
    injector.kills, injector.node_restart, injector.unplanned_exits

One thread does everything in turn, so at most one service is down at a time (the 2-of-3
committee keeps its quorum while an oracle is down) and the node is never restarted while a
service is down. A kill: the signal, a wait for the process to exit (SIGINT and SIGTERM ask the
service to stop cleanly; one still running after STOP_WAIT_S is SIGKILLed, and that is
recorded), the planned down time, then the same command again, until it serves (its ready
file). The node restart takes `gate` so the soak's own client pauses meanwhile: anvil is
stopped with SIGTERM (it writes its state file), stays down, and starts on the same port and
state. A marker line goes into the service's log before each restart, so its log reads as
one story.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from gpumarket.demo.devnet import ProcessLauncher
from gpumarket.demo.launcher import LaunchError
from gpumarket.soak.schedule import FaultSchedule, PlannedKill

__all__ = ["MARKER", "FaultInjector", "KillRecord", "NodeRestartRecord", "UnplannedExit"]

log = logging.getLogger(__name__)

MARKER = "==== gpumarket soak:"
MAX_UNPLANNED_RESTARTS = 3
STOP_WAIT_S = 30.0  # a service asked to stop (SIGINT, SIGTERM) that is still running then is SIGKILLed
_TICK_S = 0.25


@dataclass
class KillRecord:
    """One kill. Times in seconds; `at_s` since the soak started."""

    at_s: float
    service: str
    kind: str  # "agent" or "oracle"
    signal: str  # "SIGINT", "SIGTERM", "SIGKILL"
    down_s: float  # planned: from its exit to its restart
    exited_after_s: float | None = None  # from the signal to the exit
    back_after_s: float | None = None  # from the signal to serving again
    forced: bool = False  # it ignored SIGINT/SIGTERM for STOP_WAIT_S and was SIGKILLed
    exit_code: int | None = None
    error: str | None = None  # the restart failed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NodeRestartRecord:
    at_s: float
    down_s: float
    jobs_created_before: int
    back_after_s: float | None = None  # from the stop to anvil listening again
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UnplannedExit:
    """A service that exited without being killed by the schedule (then restarted)."""

    at_s: float
    service: str
    exit_code: int | None
    why: str  # the launcher's account: the exit code and the end of its log
    restarted: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _marker(text: str) -> str:
    """A line for a service's log, dated like the services' own lines (gpumarket.soak.reasons finds it)."""
    return f"{time.strftime('%Y-%m-%d %H:%M:%S')} {MARKER} {text} ===="


class FaultInjector:
    """See the module docstring."""

    def __init__(
        self,
        launcher: ProcessLauncher,
        schedule: FaultSchedule,
        *,
        gate: threading.Lock,
        jobs_created: Callable[[], int],
        node_restart_at_jobs: int,
        started: float,
        abort: threading.Event,
        echo: Callable[[str], None],
    ) -> None:
        """`abort` is set when the injector cannot go on (the node did not come back): the run stops."""
        self.launcher = launcher
        self.schedule = schedule
        self.gate = gate
        self.jobs_created = jobs_created
        self.node_restart_at_jobs = node_restart_at_jobs
        self.started = started  # time.monotonic() at the soak's start
        self.abort = abort
        self.echo = echo
        self.kills: list[KillRecord] = []
        self.node_restart: NodeRestartRecord | None = None
        self.unplanned_exits: list[UnplannedExit] = []
        self.error: BaseException | None = None  # what ended the thread, if not stop()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def services(self) -> list[str]:
        return [*self.schedule.agents, *self.schedule.oracles]

    def _since_start(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def start(self) -> FaultInjector:
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop taking kills; returns once the kill or restart in progress is over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            kills = self.schedule.kills()
            planned = next(kills)
            due = time.monotonic() + planned.after_s
            while not self._stop.is_set():
                self._supervise()
                if self.node_restart is None and self.jobs_created() >= self.node_restart_at_jobs:
                    self._restart_node()
                elif time.monotonic() >= due:
                    self._kill(planned)
                    planned = next(kills)
                    due = time.monotonic() + planned.after_s  # counted from the service being back
                self._stop.wait(_TICK_S)
        except (LaunchError, OSError) as error:
            log.error("fault injector stopped: %s: %s", type(error).__name__, error)
            self.error = error
            self.abort.set()

    def _kill(self, planned: PlannedKill) -> None:
        record = KillRecord(self._since_start(), planned.service, planned.kind, planned.signal.name, planned.down_s)
        self.kills.append(record)
        process = self.launcher.process_of(planned.service)
        signalled = time.monotonic()
        process.send_signal(planned.signal)
        self.echo(f"fault: {planned.signal.name} to {planned.service} (pid {process.pid}), down {planned.down_s:.1f} s")
        try:
            record.exit_code = process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            record.forced = True
            process.kill()
            record.exit_code = process.wait()
        record.exited_after_s = round(time.monotonic() - signalled, 2)
        time.sleep(planned.down_s)
        note = _marker(
            f"{planned.signal.name} at +{record.at_s:.1f} s, exited after {record.exited_after_s:.1f} s "
            f"(code {record.exit_code}), down {planned.down_s:.1f} s: restarting"
        )
        try:
            self.launcher.restart_service(planned.service, note=note)
        except LaunchError as error:
            record.error = str(error)
            self.echo(f"fault: {planned.service} did not come back after {planned.signal.name}: {error}")
            return
        record.back_after_s = round(time.monotonic() - signalled, 2)
        self.echo(
            f"fault: {planned.service} serving again, {record.back_after_s:.1f} s after its {planned.signal.name}"
            + (f" (ignored for {STOP_WAIT_S:g} s: SIGKILLed)" if record.forced else "")
        )

    def _restart_node(self) -> None:
        down_s = self.schedule.node_restart_down_s()
        with self.gate:  # the soak's client waits: what is tested is the services riding it out
            record = NodeRestartRecord(self._since_start(), down_s, self.jobs_created())
            self.node_restart = record
            stopped = time.monotonic()
            try:
                self.launcher.restart_chain(down_s)
            except LaunchError as error:
                record.error = str(error)
                self.echo(f"fault: the node did not come back: {error}")
                raise
            record.back_after_s = round(time.monotonic() - stopped, 2)
        self.echo(f"fault: restarted the node (anvil) on its saved state, down {record.back_after_s:.1f} s")

    def _supervise(self) -> None:
        """Restart, as a supervisor would, any service that exited although nobody killed it."""
        for name in self.services:
            process = self.launcher.process_of(name)
            given_up = sum(exit_.service == name for exit_ in self.unplanned_exits) >= MAX_UNPLANNED_RESTARTS
            if process.poll() is None or given_up:
                continue
            why = next((line for line in self.launcher.stopped_services() if line.startswith(f"{name}: ")), "")
            exit_ = UnplannedExit(self._since_start(), name, process.returncode, why)
            self.unplanned_exits.append(exit_)
            self.echo(f"fault: {name} EXITED ON ITS OWN with code {process.returncode}; restarting it")
            try:
                self.launcher.restart_service(
                    name,
                    note=_marker(
                        f"exited on its own with code {process.returncode} at +{exit_.at_s:.1f} s: restarting"
                    ),
                )
                exit_.restarted = True
            except LaunchError as error:
                exit_.error = str(error)
