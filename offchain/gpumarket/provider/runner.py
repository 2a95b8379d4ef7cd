"""The process runtime (development only): runs one job as a host process in its own directory,
process group, environment, limits, meter and result.

Each job gets a fresh directory ``<root>/job-<id>/`` (jobdir.py)::

    work/          the command's working directory; declared outputs are read from here
    stdout, stderr what the command writes (files, not pipes, so a job outlives an agent restart)
    pid            the wrapper's pid, written by the wrapper itself as it starts
    max_seconds    the job's wall-time limit, seconds from its start (written before it starts)
    samples.jsonl  the metering journal: the job's start (wall clock, monotonic clock, boot id),
                   written before it starts, then each sample as it is taken (metering.SampleJournal)
    exit_status    the command's exit status, written by the wrapper when the command ends
    stop_reason    why the agent stopped the job, written before it signals the group
    usage.json     the metering record (its keccak-256 is the evidence hash)
    result.json    the result bundle (see result.py; its manifest's hash is the result hash)

The command runs under a tiny POSIX sh wrapper, ``( exec "$@" )``, which is the leader of a new
session and process group: the wrapper records the command's exit status in a file, so an agent
that restarts while the job runs still learns how it ended (``Runner.adopt``), and one that
restarts after it ended records that ending from the files (``Runner.finalize``: exit_status, or
stop_reason for a job the agent was stopping; a job that left neither vanished). ``exec`` never
runs a shell builtin or function, so argv[0] is always a program, found on the spec's PATH (or
the shell's default path). The environment is the spec's ``env`` plus ``CUDA_VISIBLE_DEVICES``
(the assigned GPU indices, empty on a CPU machine), ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (so CUDA
numbers GPUs as NVML does, which the meter reads) and ``PWD`` (set by the shell).

Limits: wall time (the spec's ``max_seconds`` from the start, or less when the agent caps it at
the job's paid time: SIGTERM to the group, SIGKILL after a grace period; the limit is written to
the job's directory so a restarted agent applies the same one, from the recorded start), output
(stdout + stderr polled every ``poll_s``; past ``max_output_bytes`` the group is stopped the
same way and what it wrote beyond the limit is cut from the files), memory (``ulimit -v`` per
process when the spec asks). Whatever is left in the group when the wrapper
ends is killed. This is process isolation, not a sandbox: a job runs as the agent's
user and can escape its group with setsid; run the agent in a container or VM of its own.

The run is metered with ``gpumarket.measure.metering.meter_pid`` (process tree CPU and memory,
and NVML on the assigned GPUs when ``meter_gpus``) into the job's journal, so a job followed
after a restart is metered from its real start, the time the agent was down included.
Finishing a job (writing usage.json, then result.json, then cutting oversized outputs) can be
repeated after a crash at any point of it and gives the same hashes: a file already written is
kept, and the files it is made from do not change until result.json exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpumarket.agentapi.spec import AnyJobSpec, JobSpec
from gpumarket.measure.metering import SampleJournal, meter_pid
from gpumarket.provider.jobdir import (
    JobPaths,
    OnThisMachine,
    ProcessGone,
    RunnerConfig,
    RunResult,
    StopReason,
    conclude,
    read_exit_status,
    read_limit,
    read_stop_reason,
    record_stop,
    resume_journal,
    start_limit,
    wall_limit,
    write_atomic,
)

__all__ = [
    "JobPaths",
    "ProcessGone",
    "RunResult",
    "Runner",
    "RunnerConfig",
    "RunningJob",
    "StopReason",
    "job_environment",
    "process_start_ticks",
    "process_state",
]

log = logging.getLogger(__name__)

SHELL = "/bin/sh"
# $1 pid file, $2 exit-status file, $3 address-space limit in KiB (empty: none), then argv.
_WRAPPER = r"""
printf '%s\n' "$$" > "$1" || exit 125
status_file=$2
if [ -n "$3" ]; then ulimit -v "$3" || exit 125; fi
shift 3
( exec "$@" )
code=$?
printf '%s\n' "$code" > "$status_file"
exit "$code"
"""


def job_environment(spec: JobSpec, gpus: Sequence[int]) -> dict[str, str]:
    """The job's whole environment (the shell adds PWD)."""
    env = dict(spec.env)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (R, S, Z, ...), None when there is no such process."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): with the pid, it names one process for good."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # stat field 22


def _alive(pid: int, start_ticks: int | None, work: Path) -> bool:
    """Whether ``pid`` is still the job's wrapper: running, same start time, in the job's directory."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    if start_ticks is not None and int(fields[19]) != start_ticks:
        return False
    try:
        return os.readlink(f"/proc/{pid}/cwd") == str(work)
    except OSError:
        return False


def _group_leaders_in(work: Path) -> list[int]:
    """Live process-group leaders whose working directory is ``work`` (one scan of /proc)."""
    if not work.is_dir():
        return []
    leaders = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or int(fields[2]) != int(entry.name):  # stat field 5: the process group
            continue
        try:
            if os.readlink(entry / "cwd") == str(work):
                leaders.append(int(entry.name))
        except OSError:
            continue
    return leaders


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, sig)


def _kill_leftovers(pid: int, start_ticks: int | None) -> None:
    """SIGKILLs what is left of the group of the job's wrapper ``pid``, once the wrapper ended.

    Linux gives no new process a pid that still names a live process group, so when ``pid`` now
    names another process than the wrapper (a zombie wrapper keeps its start time), the job's
    group is empty and killpg would reach a stranger's group instead."""
    ticks = process_start_ticks(pid)
    if ticks is None or (start_ticks is not None and ticks == start_ticks):
        _kill_group(pid, signal.SIGKILL)


@dataclass(frozen=True)
class _Ending:
    """How a job ended, as its directory tells when no agent saw it end."""

    exit_code: int | None
    stop_reason: StopReason | None
    ended_unix_ns: int


def _ending(paths: JobPaths) -> _Ending | None:
    """The job's ending from its files; None when it left none (it vanished, or still runs).

    The end time is the kernel's modification time of the file written at the end: the wrapper
    writes exit_status the instant the command returns, whether or not an agent is watching, and
    plain sh has no finer clock to write (``date +%N`` is not POSIX). A job the agent was stopping
    (stop_reason, no exit status: its wrapper died of the signal) ended within the grace period
    after the stop, unobserved, so it is timed at the stop and the grace is not billed."""
    for path in (paths.exit_status, paths.stop_reason):
        try:
            ended_unix_ns = path.stat().st_mtime_ns
        except FileNotFoundError:
            continue
        return _Ending(read_exit_status(paths.exit_status), read_stop_reason(paths.stop_reason), ended_unix_ns)
    return None


class RunningJob:
    """A started (or adopted) job; ``wait`` follows it to the end and returns its RunResult."""

    def __init__(
        self,
        config: RunnerConfig,
        job_id: int,
        spec: JobSpec,
        gpus: tuple[int, ...],
        paths: JobPaths,
        pid: int,
        start_ticks: int,
        started_at: float,
        process: subprocess.Popen[bytes] | None,
        journal: SampleJournal,
        max_seconds: float | None = None,
    ) -> None:
        self.config = config
        self.job_id = job_id
        self.spec = spec
        self.gpus = gpus
        self.paths = paths
        self.pid = pid
        self.start_ticks = start_ticks
        self.started_at = started_at
        # The wall-time limit from started_at: the spec's, or less when capped at the paid time.
        self.max_seconds = wall_limit(spec, max_seconds)
        self._process = process  # None when adopted after a restart: not our child
        self._journal = journal
        self._stop_reason: StopReason | None = None
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._reaped = False  # once reaped, its pid (our group id) may name another process

    @property
    def resumed(self) -> bool:
        return self._process is None

    def stop(self, reason: StopReason = "stopped") -> None:
        """SIGTERM the job's group now, SIGKILL after the grace period (from another thread)."""
        with self._lock:
            if self._stop_reason is not None or self._reaped:
                return
            self._stop_reason = reason
            record_stop(self.paths, self.job_id, reason)  # before the signal
            _kill_group(self.pid, signal.SIGTERM)
        log.info("job %d: stopping (%s)", self.job_id, reason)
        threading.Thread(target=self._kill_after_grace, name=f"job-{self.job_id}-kill", daemon=True).start()

    def _kill_after_grace(self) -> None:
        if not self._ended.wait(self.config.kill_grace_s):
            with self._lock:
                if not self._reaped:
                    _kill_group(self.pid, signal.SIGKILL)

    def _watch(self) -> None:
        limits = self.spec.limits
        deadline = time.monotonic() + (self.started_at + self.max_seconds - time.time())
        while not self._ended.wait(self.config.poll_s):
            if time.monotonic() >= deadline:
                self.stop("timeout")
                return
            written = sum(path.stat().st_size for path in (self.paths.stdout, self.paths.stderr) if path.exists())
            if written > limits.max_output_bytes:
                self.stop("output_limit")
                return

    def wait(self) -> RunResult:
        """Blocks until the job ends; then kills what is left of its group, reads its exit
        status and files, and writes usage.json and result.json. Call it once."""
        watchdog = threading.Thread(target=self._watch, name=f"job-{self.job_id}-watch", daemon=True)
        watchdog.start()
        gpus = self.gpus if self.config.meter_gpus else ()
        try:
            # Before the wrapper is reaped: its final CPU times are read while it is a zombie.
            usage = meter_pid(
                self.pid, gpus=gpus, interval_s=self.config.meter_interval_s, job_id=self.job_id, journal=self._journal
            )
        except ValueError:
            self._ended.set()
            self._reap()
            raise
        finally:
            self._ended.set()
            watchdog.join()
        # Leftover background processes would hold the GPUs.
        self._reap()
        return conclude(
            self.job_id,
            self.spec,
            self.paths,
            exit_code=read_exit_status(self.paths.exit_status),
            stop_reason=self._stop_reason,
            usage=lambda: usage,
            started_at=self.started_at,
            finished_at=time.time(),
            resumed=self.resumed,
        )

    def _reap(self) -> None:
        """Kills what is left of the group and reaps our own child (not an adopted one)."""
        with self._lock:
            _kill_leftovers(self.pid, self.start_ticks)  # our child, still unreaped, keeps the group's id
            if self._process is not None:
                self._process.wait()
            self._reaped = True


class Runner(OnThisMachine):
    """The process runtime (gpumarket.provider.runtime.JobRuntime): starts jobs under
    ``config.root`` as host processes and re-attaches to them after a restart."""

    name = "process"
    pulls_images = False

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        Path(config.root).mkdir(parents=True, exist_ok=True)

    def paths(self, job_id: int) -> JobPaths:
        return JobPaths.of(self.config.root, job_id)

    def offer(self) -> dict[str, Any]:
        return {"runtime": self.name}

    def refusal(self, spec: AnyJobSpec) -> str | None:
        if not isinstance(spec, JobSpec):
            return (
                f"this agent runs jobs as host processes (the development runtime); a version {spec.version}"
                " spec (a container) needs an agent with the container runtime"
            )
        return None

    def prepare(self, job_id: int, spec: AnyJobSpec, *, timeout_s: float | None = None) -> None:
        """Nothing to get: the command runs on the host as it is."""

    def sweep(self, keep: set[int]) -> list[int]:
        """Nothing outlives its job here: leftover processes are killed with their group."""
        return []

    def start(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int] = (), *, max_seconds: float | None = None
    ) -> RunningJob:
        """Creates the job's fresh directory and starts its command; FileExistsError if the
        directory exists (a job id runs once), ValueError for a spec this runtime does not run.
        ``max_seconds`` caps the spec's wall-time limit (the agent passes the job's paid time
        left); it must be positive."""
        if not isinstance(spec, JobSpec):
            raise ValueError(f"job {job_id}: {self.refusal(spec)}")
        limit = start_limit(job_id, spec, max_seconds)
        paths = self.paths(job_id)
        paths.root.mkdir(parents=False)
        paths.work.mkdir()
        # Before the process exists, so an agent that restarts while it runs never lacks them:
        # the limit, and the start that the meter's clock (and any later meter's) counts from.
        write_atomic(paths.max_seconds, repr(float(limit)).encode())
        journal = SampleJournal.begin(paths.journal, job_id=job_id)
        memory_kib = "" if spec.limits.max_memory_bytes is None else str(spec.limits.max_memory_bytes // 1024)
        argv = [SHELL, "-c", _WRAPPER, "sh", str(paths.pidfile), str(paths.exit_status), memory_kib, *spec.command]
        with open(paths.stdout, "wb") as stdout, open(paths.stderr, "wb") as stderr:
            process = subprocess.Popen(
                argv,
                cwd=paths.work,
                env=job_environment(spec, gpus),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                close_fds=True,
                start_new_session=True,  # its own session and process group: killpg reaches all of it
            )
        started_at = time.time()
        start_ticks = process_start_ticks(process.pid)
        assert start_ticks is not None  # our unreaped child has a /proc entry
        log.info("job %d: started pid %d in %s, gpus %s", job_id, process.pid, paths.work, list(gpus) or "none")
        if limit < spec.limits.max_seconds:
            log.info(
                "job %d: wall-time limit %.1f s (its paid time left), not the spec's %d s",
                job_id,
                limit,
                spec.limits.max_seconds,
            )
        return RunningJob(
            self.config,
            job_id,
            spec,
            tuple(gpus),
            paths,
            process.pid,
            start_ticks,
            started_at,
            process,
            journal,
            limit,
        )

    def run(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int] = (), *, max_seconds: float | None = None
    ) -> RunResult:
        """``start`` and ``wait``."""
        return self.start(job_id, spec, gpus, max_seconds=max_seconds).wait()

    def find_started(self, job_id: int) -> tuple[int, int] | None:
        """(pid, start ticks) of the job's live wrapper; None when the job never started or no
        longer runs. The wrapper writes its pid file first thing; in the instant before that, it
        is found as the process-group leader whose working directory is the job's."""
        paths = self.paths(job_id)
        try:
            text = paths.pidfile.read_text().strip()
        except FileNotFoundError:
            text = ""
        candidates = [int(text)] if text.isdigit() else _group_leaders_in(paths.work)
        for pid in candidates:
            ticks = process_start_ticks(pid)
            if ticks is not None and _alive(pid, ticks, paths.work):
                return pid, ticks
        return None

    def recorded_start(self, job_id: int) -> tuple[int, float] | None:
        """(pid, wall-clock time) the wrapper wrote its pid file with; None when it never did."""
        pidfile = self.paths(job_id).pidfile
        try:
            text, started_at = pidfile.read_text().strip(), pidfile.stat().st_mtime
        except FileNotFoundError:
            return None
        return (int(text), started_at) if text.isdigit() else None

    def is_alive(self, job_id: int, pid: int, start_ticks: int | None) -> bool:
        """Whether the job's wrapper is still running (the same process, not a reused pid)."""
        return _alive(pid, start_ticks, self.paths(job_id).work)

    def has_ended(self, job_id: int) -> bool:
        """Whether the job left its ending on disk (an exit status, or the agent's stop)."""
        return _ending(self.paths(job_id)) is not None

    def _journal(self, job_id: int, started_at: float) -> SampleJournal:
        return resume_journal(self.paths(job_id), job_id, started_at)

    def adopt(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int], pid: int, start_ticks: int, started_at: float
    ) -> RunningJob:
        """Follows a job a previous agent started; ProcessGone when it is no longer running. Its
        wall-time limit is the one written when it started, counted from ``started_at``; its
        meter goes on with the job's journal; a stop the previous agent began is carried out."""
        if not isinstance(spec, JobSpec):
            raise TypeError(f"job {job_id}: {self.refusal(spec)}")
        if not self.is_alive(job_id, pid, start_ticks):
            raise ProcessGone(f"job {job_id}: process {pid} is gone")
        paths = self.paths(job_id)
        journal = self._journal(job_id, started_at)
        log.info(
            "job %d: re-attached to pid %d (metered since its start, %d samples journaled)",
            job_id,
            pid,
            len(journal.samples),
        )
        job = RunningJob(
            self.config,
            job_id,
            spec,
            tuple(gpus),
            paths,
            pid,
            start_ticks,
            started_at,
            None,
            journal,
            read_limit(paths.max_seconds),
        )
        stopping = read_stop_reason(paths.stop_reason)
        if stopping is not None:
            job.stop(stopping)
        return job

    def finalize(
        self, job_id: int, spec: AnyJobSpec, pid: int, start_ticks: int | None, started_at: float
    ) -> RunResult:
        """Records a job that ended while no agent followed it, from the files it left, as
        ``wait`` would have: ProcessGone when it left no ending (its wrapper was killed, or the
        machine went down). Its usage record runs from its start (the journal) to its end (the
        ending file's time, see ``_ending``). Safe to repeat: see ``_conclude``."""
        if not isinstance(spec, JobSpec):
            raise TypeError(f"job {job_id}: {self.refusal(spec)}")
        paths = self.paths(job_id)
        ending = _ending(paths)
        if ending is None:
            raise ProcessGone(f"job {job_id}: process {pid} is gone and left no exit status")
        _kill_leftovers(pid, start_ticks)  # background processes it left would hold the GPUs
        log.info("job %d: ended while no agent followed it (exit %s)", job_id, ending.exit_code)
        return conclude(
            job_id,
            spec,
            paths,
            exit_code=ending.exit_code,
            stop_reason=ending.stop_reason,
            usage=lambda: self._journal(job_id, started_at).conclude(
                pid=pid, interval_s=self.config.meter_interval_s, ended_unix_ns=ending.ended_unix_ns
            ),
            started_at=started_at,
            finished_at=ending.ended_unix_ns / 1e9,
            resumed=True,
        )

    def discard(self, job_id: int) -> None:
        """Removes a job's directory (for a job that never started)."""
        shutil.rmtree(self.paths(job_id).root, ignore_errors=True)
