"""A job's directory and what a finished job leaves there, whichever runtime ran it.

Each job gets a fresh directory ``<root>/job-<id>/`` (``JobPaths``)::

    work/          the command's working directory (a container's /work); declared outputs are read from here
    stdout, stderr what the command wrote
    max_seconds    the job's wall-time limit, seconds from its start (written before it starts)
    samples.jsonl  the metering journal (metering.SampleJournal)
    exit_status    the command's exit status
    stop_reason    why the agent stopped the job, written before it signals the job
    usage.json     the metering record (its keccak-256 is the evidence hash)
    result.json    the result bundle (see result.py; its manifest's hash is the result hash)

plus what each runtime keeps of its own (runner.py: the wrapper's pid file; container_runner.py:
the container's id and the engine's log). ``conclude`` writes what a job that ended leaves, the
same way for every runtime, and can be repeated after a crash at any point with the same hashes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpumarket.agentapi.result import ResultBundle, collect_result
from gpumarket.agentapi.spec import AnyJobSpec
from gpumarket.measure.metering import JournalError, SampleJournal, UsageRecord

__all__ = [
    "JobPaths",
    "OnThisMachine",
    "ProcessGone",
    "RunResult",
    "RunnerConfig",
    "StopReason",
    "conclude",
    "read_exit_status",
    "read_limit",
    "read_stop_reason",
    "record_stop",
    "resume_journal",
    "start_limit",
    "wall_limit",
    "write_atomic",
]

log = logging.getLogger(__name__)

StopReason = str  # "timeout", "output_limit" or "stopped" (the agent was told to stop it)


class ProcessGone(RuntimeError):
    """A job's process is no longer there to follow."""


@dataclass(frozen=True)
class RunnerConfig:
    """Where jobs live and how they are watched.

    ``meter_interval_s``: metering sample period; ``meter_gpus``: also meter the assigned GPUs
    through NVML (needs a driver); ``poll_s``: how often time and output are checked;
    ``kill_grace_s``: between SIGTERM and SIGKILL when a job is stopped."""

    root: Path
    meter_interval_s: float = 1.0
    meter_gpus: bool = True
    poll_s: float = 0.05
    kill_grace_s: float = 2.0


@dataclass(frozen=True)
class JobPaths:
    root: Path

    @classmethod
    def of(cls, runner_root: Path, job_id: int) -> JobPaths:
        return cls(Path(runner_root) / f"job-{job_id}")

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def stdout(self) -> Path:
        return self.root / "stdout"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr"

    @property
    def pidfile(self) -> Path:
        return self.root / "pid"

    @property
    def max_seconds(self) -> Path:
        return self.root / "max_seconds"

    @property
    def journal(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def exit_status(self) -> Path:
        return self.root / "exit_status"

    @property
    def stop_reason(self) -> Path:
        return self.root / "stop_reason"

    @property
    def usage(self) -> Path:
        return self.root / "usage.json"

    @property
    def result(self) -> Path:
        return self.root / "result.json"


@dataclass(frozen=True)
class RunResult:
    """How a job ended, what it left, what it used."""

    job_id: int
    exit_code: int | None  # None when the agent stopped it (or its wrapper died first)
    stop_reason: StopReason | None
    output_limit_exceeded: bool
    paths: JobPaths
    bundle: ResultBundle
    usage: UsageRecord
    evidence_hash: bytes
    started_at: float  # wall clock, seconds
    finished_at: float
    resumed: bool  # followed, or found ended, after an agent restart (metered from its start all the same)

    @property
    def timed_out(self) -> bool:
        return self.stop_reason == "timeout"

    @property
    def result_hash(self) -> bytes:
        return self.bundle.result_hash

    @property
    def output_paths(self) -> dict[str, Path]:
        """Each included file of the bundle and where it lies on disk."""
        where = {"stdout": self.paths.stdout, "stderr": self.paths.stderr}
        return {
            entry.name: where.get(entry.name, self.paths.work / entry.name.removeprefix("outputs/"))
            for entry in self.bundle.manifest.files
            if entry.included
        }


class OnThisMachine:
    """What a runtime whose jobs run on the agent's own machine says of placement: the agent's
    GPU accounting is the whole story, and every job runs here."""

    def capacity_refusal(self, gpu_count: int) -> str | None:
        return None

    def placement(self, job_id: int) -> dict[str, Any] | None:
        return None


def write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_limit(path: Path) -> float | None:
    """The wall-time limit written at start; None (the spec's) when absent or unreadable."""
    try:
        value = float(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return value if value > 0 else None


def read_exit_status(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def read_stop_reason(path: Path) -> StopReason | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def conclude(
    job_id: int,
    spec: AnyJobSpec,
    paths: JobPaths,
    *,
    exit_code: int | None,
    stop_reason: StopReason | None,
    usage: Callable[[], UsageRecord],
    started_at: float,
    finished_at: float,
    resumed: bool,
) -> RunResult:
    """Writes what a job that ended leaves (usage.json, result.json, outputs cut to the limit) and
    returns it; ``usage`` makes the record when usage.json is not written yet. A usage or result
    file already written (by an agent that died before recording the job finished) is kept as it
    is, so doing this again gives the same hashes."""
    try:
        record = UsageRecord.from_json(paths.usage.read_bytes())
    except FileNotFoundError:
        record = usage()
        write_atomic(paths.usage, record.canonical_json())
    try:
        bundle = ResultBundle.parse(paths.result.read_bytes())
    except FileNotFoundError:
        bundle = collect_result(
            job_id=job_id,
            exit_code=exit_code,
            timed_out=stop_reason == "timeout",
            killed_for_output=stop_reason == "output_limit",
            stdout=paths.stdout,
            stderr=paths.stderr,
            work_dir=paths.work,
            outputs=spec.outputs,
            max_bytes=spec.limits.max_output_bytes,
        )
    if not paths.result.exists():
        write_atomic(paths.result, bundle.to_bytes())
    # The watchdog notices a flood of output within one poll period; cut what came after. Only
    # now: collecting the result again before result.json exists must read the same files.
    for path in (paths.stdout, paths.stderr):
        if path.stat().st_size > spec.limits.max_output_bytes:
            os.truncate(path, spec.limits.max_output_bytes)
    log.info(
        "job %d: ended, exit %s%s, result 0x%s",
        job_id,
        exit_code,
        f" ({stop_reason})" if stop_reason else "",
        bundle.result_hash.hex(),
    )
    return RunResult(
        job_id=job_id,
        exit_code=exit_code,
        stop_reason=stop_reason,
        output_limit_exceeded=bundle.manifest.output_limit_exceeded,
        paths=paths,
        bundle=bundle,
        usage=record,
        evidence_hash=record.evidence_hash(),
        started_at=started_at,
        finished_at=finished_at,
        resumed=resumed,
    )


def resume_journal(paths: JobPaths, job_id: int, started_at: float) -> SampleJournal:
    """The job's journal to go on with after a restart. Without a readable one (an agent that
    kept none, a damaged file: set aside), a new one begins at the recorded start, on the wall
    clock: its samples are lost, its start is not, and a live job is never dropped for it."""
    try:
        return SampleJournal.resume(paths.journal, job_id=job_id)
    except FileNotFoundError:
        pass
    except JournalError as error:
        log.warning("job %d: %s; its samples so far are lost", job_id, error)
        paths.journal.replace(paths.journal.with_name(paths.journal.name + ".unreadable"))
    return SampleJournal.begin(paths.journal, job_id=job_id, started_unix_ns=round(started_at * 1e9))


def wall_limit(spec: AnyJobSpec, max_seconds: float | None) -> float:
    """A job's wall-time limit from its start: the spec's ``max_seconds``, or less when the agent
    capped it (at the job's paid time left)."""
    return min(max_seconds or spec.limits.max_seconds, spec.limits.max_seconds)


def start_limit(job_id: int, spec: AnyJobSpec, max_seconds: float | None) -> float:
    """``wall_limit`` for a job about to start; ValueError when the cap is not positive."""
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"job {job_id}: max_seconds must be positive, got {max_seconds}")
    return wall_limit(spec, max_seconds)


def record_stop(paths: JobPaths, job_id: int, reason: StopReason) -> None:
    """Writes why the agent stops the job, before it signals it: an agent that dies in between
    leaves a stopped job, not a vanished one. A failed write is logged, never raised."""
    try:
        write_atomic(paths.stop_reason, reason.encode())
    except OSError as error:
        log.warning("job %d: could not record the stop (%s): %s", job_id, reason, error)
