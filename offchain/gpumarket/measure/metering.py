"""Metering of a running job, its evidence hash, and billable time.

A ``JobMeter`` follows one job, a process (``meter_pid``) or a callable run in this process
(``meter_call``), and takes a ``Sample`` at a fixed interval:

- always: the CPU time charged to the job (user + system, of the process and every live or
  reaped descendant, from ``/proc/<pid>/stat``) and the resident memory of that process tree
  (``VmRSS`` from ``/proc/<pid>/status``); or, for a job whose usage is accounted elsewhere,
  what its ``usage_source`` reads (a ``UsageReading``: whether it runs, its CPU time, the
  memory to record). A container job's source is its cgroup (container_runner.py): the CPU
  time of every process the container ran, and as ``rss_bytes`` the cgroup's memory
  high-water mark so far, so a container's record has its memory peak as ``max_rss_bytes``
  (a process job's is the largest resident memory a sample saw);
- for each GPU assigned to the job, through NVML: utilisation, memory used, power draw and the
  total-energy counter. Each of these is ``None`` where the GPU does not support it; NVML's
  utilisation and memory are per device, so the job must hold its GPUs alone.

A job's meter may keep a ``SampleJournal``, a file in the job's directory: the job's start
(wall clock, monotonic clock and the boot it belongs to) written before the job starts, then each
sample appended as it is taken. A meter in a restarted agent reads it and continues on the same
time base (the monotonic clock on the same boot, the wall clock otherwise), so the record spans
the job from its real start, gap included; ``SampleJournal.conclude`` ends the record of a job
that ended while no meter followed it.

The result is a ``UsageRecord``: the samples and a ``UsageSummary`` derived from them by
``summarize`` (a pure function, so whoever receives a record recomputes the summary and
``UsageRecord.from_json`` refuses one that does not match). Every value is an integer in a named
unit (ns, ms, bytes, mW, mJ): the canonical JSON encoding then has one spelling per record, and
``evidence_hash`` (keccak-256 of that encoding, 32 bytes) is what ``JobReport.evidence_hash``
carries on chain.

What a completed job bills comes from this record: the oracles read its metered wall time
(``UsageSummary.wall_ns``, in whole seconds, times the job's GPU count) once every challenge
during the job passed, and never more than the time since the job's on-chain start
(gpumarket.oracle.jobs). ``billable_gpu_seconds`` is the bracket rule they apply to it: time
counts only between passing challenges, here the job's own start and end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

from gpumarket.measure.nvml import NvmlUnavailable, as_text, nvml_query, nvml_session
from gpumarket.measure.records import STRICT, parse_json

__all__ = [
    "USAGE_VERSION",
    "ChallengeResult",
    "GpuSample",
    "GpuUsage",
    "JobFailed",
    "JobMeter",
    "JournalError",
    "JournalHeader",
    "Sample",
    "SampleJournal",
    "UsageReading",
    "UsageRecord",
    "UsageSummary",
    "billable_gpu_seconds",
    "boot_id",
    "canonical_json",
    "evidence_hash",
    "meter_call",
    "meter_pid",
    "summarize",
]

log = logging.getLogger(__name__)

USAGE_VERSION = 1
JOURNAL_VERSION = 1
MIN_INTERVAL_S = 0.01  # below this the /proc scan itself becomes the load being measured

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")
_BOOT_ID = _PROC / "sys" / "kernel" / "random" / "boot_id"

R = TypeVar("R")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one instant; ``None`` where this GPU does not report the value."""

    __pydantic_config__ = STRICT

    uuid: str
    utilization_percent: int | None  # share of the last NVML period a kernel ran, 0..100
    memory_used_bytes: int | None  # device-wide
    power_mw: int | None
    energy_mj: int | None  # NVML's energy counter since the driver loaded


@dataclass(frozen=True)
class Sample:
    """The job at one instant."""

    __pydantic_config__ = STRICT

    t_ns: int  # monotonic nanoseconds since metering began (a journaled job: since its start)
    running: bool  # False once the job's process has exited
    cpu_ms: int  # CPU time charged to the job so far, never decreasing
    rss_bytes: int  # resident memory of the job's process tree now
    gpus: tuple[GpuSample, ...]


@dataclass(frozen=True)
class GpuUsage:
    """One GPU over the whole record."""

    __pydantic_config__ = STRICT

    uuid: str
    busy_ms: int | None  # sum of utilisation x interval: GPU-milliseconds at full utilisation
    max_memory_used_bytes: int | None
    max_power_mw: int | None
    energy_mj: int | None
    energy_source: str | None  # "counter" (energy counter delta), "power" (power x time) or None


@dataclass(frozen=True)
class UsageSummary:
    """What the samples add up to (``summarize``)."""

    __pydantic_config__ = STRICT

    samples: int
    wall_ns: int  # last sample's time minus the first's
    cpu_ms: int
    max_rss_bytes: int
    gpus: tuple[GpuUsage, ...]

    @property
    def wall_seconds(self) -> float:
        return self.wall_ns / _NS_PER_S

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ms / 1000

    @property
    def gpu_seconds_busy(self) -> float | None:
        """GPU-seconds weighted by utilisation, over all GPUs; None if no GPU reported it."""
        busy = [gpu.busy_ms for gpu in self.gpus if gpu.busy_ms is not None]
        return sum(busy) / 1000 if busy else None

    @property
    def energy_joules(self) -> float | None:
        """Energy over all GPUs; None if no GPU reported energy or power."""
        energy = [gpu.energy_mj for gpu in self.gpus if gpu.energy_mj is not None]
        return sum(energy) / 1000 if energy else None


@dataclass(frozen=True)
class UsageRecord:
    """The evidence for one metered job."""

    __pydantic_config__ = STRICT

    version: int
    job_id: int | None  # the on-chain job id when known, so one record cannot serve two jobs
    pid: int
    gpu_uuids: tuple[str, ...]
    interval_ms: int
    started_unix_ns: int  # wall clock when metering began (the samples use a monotonic clock)
    complete: bool  # True when the record reaches the job's end (metered, or concluded from its files)
    samples: tuple[Sample, ...]
    summary: UsageSummary

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def canonical_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def evidence_hash(self) -> bytes:
        return evidence_hash(self)

    def check(self) -> None:
        """Raises ValueError unless the samples are well formed and the summary is theirs."""
        if self.version != USAGE_VERSION:
            raise ValueError(f"usage record: version {self.version}, expected {USAGE_VERSION}")
        if not self.samples:
            raise ValueError("usage record: no samples")
        for before, after in pairwise(self.samples):
            if after.t_ns <= before.t_ns:
                raise ValueError(f"usage record: sample times not increasing ({before.t_ns} then {after.t_ns})")
            if after.cpu_ms < before.cpu_ms:
                raise ValueError(f"usage record: cpu_ms decreases ({before.cpu_ms} then {after.cpu_ms})")
        for sample in self.samples:
            if tuple(gpu.uuid for gpu in sample.gpus) != self.gpu_uuids:
                raise ValueError(f"usage record: sample at {sample.t_ns} ns does not cover GPUs {self.gpu_uuids}")
        expected = summarize(self.samples, self.gpu_uuids)
        if self.summary != expected:
            raise ValueError(f"usage record: summary {self.summary} does not match its samples ({expected})")

    @classmethod
    def from_json(cls, text: str | bytes) -> UsageRecord:
        """Parses a record and checks it (ValueError on any malformed or inconsistent field)."""
        record = parse_json(cls, text)
        record.check()
        return record


def canonical_json(value: Any) -> bytes:
    """The one encoding hashed as evidence: sorted keys, no spaces, ASCII, integers only.

    Floats are refused because their decimal spelling differs between languages; every
    measured quantity is an integer in a named unit instead.
    """
    _check_canonical(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _check_canonical(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        raise ValueError(f"canonical JSON: {where} is a float ({value!r}); use an integer unit")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_canonical(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"canonical JSON: {where} has a non-string key {key!r}")
            _check_canonical(item, f"{where}.{key}")
        return
    raise ValueError(f"canonical JSON: {where} has unsupported type {type(value).__name__}")


def evidence_hash(record: UsageRecord) -> bytes:
    """keccak-256 of the record's canonical JSON: the 32-byte ``JobReport.evidence_hash``."""
    from eth_utils.crypto import keccak  # imported here: metering itself runs without the chain stack

    return keccak(record.canonical_json())


# --------------------------------------------------------------------------- summary


def _gpu_usage(uuid: str, samples: Sequence[Sample], column: int) -> GpuUsage:
    readings = [sample.gpus[column] for sample in samples]
    times = [sample.t_ns for sample in samples]
    # NVML's utilisation covers the period before the reading, so reading i weighs interval (i-1, i].
    busy_pct_ns = [
        r.utilization_percent * (t - t_prev)
        for r, (t_prev, t) in zip(readings[1:], pairwise(times), strict=True)
        if r.utilization_percent is not None
    ]
    has_util = any(r.utilization_percent is not None for r in readings)
    memory = [r.memory_used_bytes for r in readings if r.memory_used_bytes is not None]
    power = [r.power_mw for r in readings if r.power_mw is not None]
    energy: int | None
    source: str | None
    if readings[0].energy_mj is not None and readings[-1].energy_mj is not None:
        energy, source = readings[-1].energy_mj - readings[0].energy_mj, "counter"
    elif power:
        # Left-endpoint sum where the counter is missing: mW x ns = 1e-9 mJ.
        mw_ns = sum(
            r.power_mw * (t - t_prev)
            for r, (t_prev, t) in zip(readings[:-1], pairwise(times), strict=True)
            if r.power_mw is not None
        )
        energy, source = mw_ns // _NS_PER_S, "power"
    else:
        energy, source = None, None
    return GpuUsage(
        uuid=uuid,
        busy_ms=sum(busy_pct_ns) // (100 * _NS_PER_MS) if has_util else None,
        max_memory_used_bytes=max(memory) if memory else None,
        max_power_mw=max(power) if power else None,
        energy_mj=energy,
        energy_source=source,
    )


def summarize(samples: Sequence[Sample], gpu_uuids: Sequence[str]) -> UsageSummary:
    """The summary of a non-empty run of samples (pure: the receiver recomputes it)."""
    if not samples:
        raise ValueError("summarize: no samples")
    return UsageSummary(
        samples=len(samples),
        wall_ns=samples[-1].t_ns - samples[0].t_ns,
        cpu_ms=samples[-1].cpu_ms,
        max_rss_bytes=max(sample.rss_bytes for sample in samples),
        gpus=tuple(_gpu_usage(uuid, samples, column) for column, uuid in enumerate(gpu_uuids)),
    )


# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class UsageReading:
    """A job's usage read from outside its process tree, by a ``JobMeter.usage_source``."""

    running: bool  # whether the job still runs (False ends the metering)
    cpu_ms: int  # CPU time charged to the job so far (the meter never lets it go backwards)
    rss_bytes: int  # the memory a sample records (a container: its cgroup's peak so far)


@dataclass(frozen=True)
class _Stat:
    ppid: int
    state: str
    cpu_ticks: int  # utime + stime + cutime + cstime: own threads and reaped descendants


def _read_stat(pid: int) -> _Stat | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])  # stat fields 14..17
    return _Stat(ppid=int(fields[1]), state=fields[0], cpu_ticks=utime + stime + cutime + cstime)


def _read_rss_bytes(pid: int) -> int:
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # zombies and kernel threads have no VmRSS line


def _process_tree(root: int) -> dict[int, _Stat]:
    """The root and its live descendants, by one scan of /proc."""
    stats: dict[int, _Stat] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    if root not in stats:
        return {}
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        tree[pid] = stats[pid]
        todo.extend(children.get(pid, ()))
    return tree


# --------------------------------------------------------------------------- the journal


def boot_id() -> str | None:
    """This boot's id (the kernel's random ``boot_id``): monotonic readings compare only within one."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


class JournalError(ValueError):
    """A journal that cannot be read: no header, another job's, or a malformed line before the last."""


@dataclass(frozen=True)
class JournalHeader:
    """The first line of a journal: when the job started, on both clocks."""

    __pydantic_config__ = STRICT

    version: int
    job_id: int | None
    started_unix_ns: int  # wall clock
    started_monotonic_ns: int | None  # CLOCK_MONOTONIC; None when the journal was begun after the fact
    boot_id: str | None  # the boot that monotonic reading belongs to


def _no_reading(uuid: str, energy_mj: int | None = None) -> GpuSample:
    """A GPU in a sample that could not read it (only a known energy counter may be carried over)."""
    return GpuSample(uuid=uuid, utilization_percent=None, memory_used_bytes=None, power_mw=None, energy_mj=energy_mj)


def _usage_record(
    job_id: int | None,
    pid: int,
    uuids: tuple[str, ...],
    interval_ns: int,
    started_unix_ns: int,
    complete: bool,
    samples: Sequence[Sample],
) -> UsageRecord:
    return UsageRecord(
        version=USAGE_VERSION,
        job_id=job_id,
        pid=pid,
        gpu_uuids=uuids,
        interval_ms=interval_ns // _NS_PER_MS,
        started_unix_ns=started_unix_ns,
        complete=complete,
        samples=tuple(samples),
        summary=summarize(samples, uuids),
    )


class SampleJournal:
    """A job's samples on disk, so that metering outlives the agent that began it.

    JSON lines: a ``JournalHeader``, then one ``Sample`` per line, appended as each is taken (a
    write without fsync: an agent that dies loses nothing it wrote; a machine that dies ends the
    job too). ``begin`` writes the header (fsync'd) before the job starts; ``resume`` reads it
    back in another process, and the journal's clock (``elapsed_ns``) is then the same as the
    first meter's: the monotonic clock while the boot is the same, else the wall clock.
    ``resumed`` says the next live sample follows a gap that no meter watched. A journal without
    a path (``in_memory``) keeps its samples in memory only: a meter without a journal uses one.
    """

    def __init__(self, path: Path | None, header: JournalHeader, samples: Sequence[Sample], *, resumed: bool) -> None:
        self.path = path
        self.header = header
        self.samples: list[Sample] = list(samples)
        self.resumed = resumed
        same_boot = header.boot_id is not None and header.boot_id == boot_id()
        self._monotonic = same_boot and header.started_monotonic_ns is not None
        self._append_failed = False

    @staticmethod
    def _now(job_id: int | None) -> JournalHeader:
        return JournalHeader(JOURNAL_VERSION, job_id, time.time_ns(), time.monotonic_ns(), boot_id())

    @classmethod
    def in_memory(cls, job_id: int | None) -> SampleJournal:
        """A journal starting now that writes nothing."""
        return cls(None, cls._now(job_id), (), resumed=False)

    @classmethod
    def begin(cls, path: Path, *, job_id: int | None, started_unix_ns: int | None = None) -> SampleJournal:
        """A new journal for a job starting now; FileExistsError when there is one already.

        ``started_unix_ns`` begins it after the fact, for a job that started then without one:
        that instant's monotonic reading is unknown, so the wall clock is its time base."""
        if started_unix_ns is None:
            header = cls._now(job_id)
        else:
            header = JournalHeader(JOURNAL_VERSION, job_id, started_unix_ns, None, None)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, canonical_json(asdict(header)) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return cls(path, header, (), resumed=started_unix_ns is not None)

    @classmethod
    def resume(cls, path: Path, *, job_id: int | None) -> SampleJournal:
        """The journal another meter wrote; FileNotFoundError when there is none, JournalError
        when it is unreadable or another job's. A torn last line (the writer died while
        writing it) is dropped and cut from the file, so appending goes on after a whole line."""
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        whole = lines[:-1]  # the part after the last newline is empty, or a torn line
        if not whole:
            raise JournalError(f"journal {path}: no header")
        try:
            header = parse_json(JournalHeader, whole[0])
            samples = [parse_json(Sample, line) for line in whole[1:]]
        except ValueError as error:
            raise JournalError(f"journal {path}: {error}") from error
        if header.version != JOURNAL_VERSION or header.job_id != job_id:
            raise JournalError(f"journal {path}: version {header.version} of job {header.job_id}, not job {job_id}")
        if lines[-1]:
            os.truncate(path, len(raw) - len(lines[-1]))
        return cls(path, header, samples, resumed=True)

    def elapsed_ns(self) -> int:
        """Nanoseconds since the job's start, on the journal's clock."""
        if self._monotonic:
            assert self.header.started_monotonic_ns is not None
            return time.monotonic_ns() - self.header.started_monotonic_ns
        return time.time_ns() - self.header.started_unix_ns

    def append(self, sample: Sample) -> None:
        """Records a sample. A write that fails is logged, not raised: the journal only serves a
        restart, and the meter's own record stays whole."""
        self.samples.append(sample)
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, canonical_json(asdict(sample)) + b"\n")
            finally:
                os.close(fd)
        except OSError as error:
            if not self._append_failed:
                log.warning("journal %s: cannot append samples: %s", self.path, error)
            self._append_failed = True

    def conclude(self, *, pid: int, interval_s: float, ended_unix_ns: int) -> UsageRecord:
        """The record of a job that ended while no meter followed it, at ``ended_unix_ns``.

        When the journal already ends with the job's end (its meter saw it), the record is the one
        that meter returned. Otherwise a last sample is added (and journaled): at the end time,
        which is taken on the wall clock, never after now nor before the last sample; with the
        last known CPU time and energy counters, no GPU reading, nothing resident. A journal
        without samples starts with an empty one at the job's start (GPUs then unknown).
        """
        if not self.samples:
            self.append(Sample(t_ns=0, running=True, cpu_ms=0, rss_bytes=0, gpus=()))
        last = self.samples[-1]
        if last.running:
            t_end = min(ended_unix_ns - self.header.started_unix_ns, self.elapsed_ns())
            gpus = tuple(_no_reading(gpu.uuid, gpu.energy_mj) for gpu in last.gpus)
            self.append(Sample(max(t_end, last.t_ns + 1), running=False, cpu_ms=last.cpu_ms, rss_bytes=0, gpus=gpus))
        uuids = tuple(gpu.uuid for gpu in self.samples[0].gpus)
        interval_ns = round(interval_s * _NS_PER_S)
        return _usage_record(
            self.header.job_id, pid, uuids, interval_ns, self.header.started_unix_ns, True, self.samples
        )


# --------------------------------------------------------------------------- the meter


class _GpuProbe:
    """Reads the job's GPUs through an open NVML session."""

    def __init__(self, pynvml: ModuleType, gpus: Sequence[int | str]) -> None:
        self._pynvml = pynvml
        self._handles = []
        uuids = []
        for gpu in gpus:
            try:
                if isinstance(gpu, int):
                    handle = pynvml.nvmlDeviceGetHandleByIndex(gpu)
                else:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(gpu)
                uuids.append(as_text(pynvml.nvmlDeviceGetUUID(handle)))
            except pynvml.NVMLError as error:
                raise ValueError(f"metering: no GPU {gpu!r} on this machine: {error}") from error
            self._handles.append(handle)
        if len(set(uuids)) != len(uuids):
            raise ValueError(f"metering: a GPU is listed twice in {list(gpus)}")
        self.uuids = tuple(uuids)

    def read(self) -> tuple[GpuSample, ...]:
        nvml = self._pynvml
        samples = []
        for uuid, handle in zip(self.uuids, self._handles, strict=True):
            util = nvml_query(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
            memory = nvml_query(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
            samples.append(
                GpuSample(
                    uuid=uuid,
                    utilization_percent=None if util is None else int(util.gpu),
                    memory_used_bytes=None if memory is None else int(memory.used),
                    power_mw=nvml_query(nvml, nvml.nvmlDeviceGetPowerUsage, handle),
                    energy_mj=nvml_query(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handle),
                )
            )
        return tuple(samples)


def _pidfd(pid: int) -> int | None:
    # A pidfd turns readable the moment the process exits, so the last sample is taken while a
    # child's final CPU times are still readable (as a zombie), not up to an interval later.
    if pid == os.getpid() or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


@dataclass
class JobMeter:
    """Samples the process tree under ``pid`` and the given GPUs (NVML indices or UUIDs).

    ``count_from_start``: True charges the job all CPU time the process has used since it began
    (a job's own process); False charges only what it uses after the meter starts (``meter_call``,
    where the process is this one).

    ``journal``: the job's ``SampleJournal``. Samples are then timed on its clock (from the job's
    start) and appended to it; a resumed journal's samples come first in the record. It needs
    ``count_from_start``: a CPU baseline would not survive the restart.

    ``usage_source``: where each sample's running state, CPU time and memory come from instead
    of the process tree under ``pid`` (a container's cgroup); ``pid`` is then only what the
    record names and what the meter waits on to see the end at once (it need not exist).
    """

    pid: int
    gpus: Sequence[int | str] = ()
    interval_s: float = 1.0
    job_id: int | None = None
    count_from_start: bool = True
    journal: SampleJournal | None = None
    usage_source: Callable[[], UsageReading] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.pid, bool) or not isinstance(self.pid, int) or self.pid <= 0:
            raise ValueError(f"metering: pid must be a positive int, got {self.pid!r}")
        if not math.isfinite(self.interval_s) or self.interval_s < MIN_INTERVAL_S:
            raise ValueError(f"metering: interval_s must be >= {MIN_INTERVAL_S}, got {self.interval_s!r}")
        if self.job_id is not None and (
            isinstance(self.job_id, bool) or not isinstance(self.job_id, int) or self.job_id < 0
        ):
            raise ValueError(f"metering: job_id must be a non-negative int or None, got {self.job_id!r}")
        if self.journal is not None and not self.count_from_start:
            raise ValueError("metering: a journal needs count_from_start (a CPU baseline is not journaled)")
        if self.usage_source is None and _read_stat(self.pid) is None:
            raise ValueError(f"metering: no process {self.pid}")

    def run(
        self,
        done: threading.Event | None = None,
        timeout_s: float | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> UsageRecord:
        """Samples until the process exits, ``done`` is set, or ``timeout_s`` passes.

        ``on_start`` is called once the CPU baseline is read, so work it starts is all charged.
        """
        if not self.gpus:
            return self._run(None, done, timeout_s, on_start)
        try:
            with nvml_session() as pynvml:
                return self._run(_GpuProbe(pynvml, self.gpus), done, timeout_s, on_start)
        except NvmlUnavailable as error:
            raise ValueError(f"metering: GPUs {list(self.gpus)} assigned but {error}") from error

    def _run(
        self,
        probe: _GpuProbe | None,
        done: threading.Event | None,
        timeout_s: float | None,
        on_start: Callable[[], None] | None,
    ) -> UsageRecord:
        interval_ns = round(self.interval_s * _NS_PER_S)
        uuids = probe.uuids if probe else ()
        journal = self.journal or SampleJournal.in_memory(self.job_id)
        samples = journal.samples
        unread: tuple[GpuSample, ...] | None = None
        if samples and tuple(gpu.uuid for gpu in samples[0].gpus) != uuids:
            if probe is not None:
                raise ValueError(f"metering: the journal's samples cover other GPUs than {list(self.gpus)}")
            # This meter cannot read GPUs (no NVML now) that the job was metered on: it goes on without readings.
            uuids = tuple(gpu.uuid for gpu in samples[0].gpus)
            unread = tuple(_no_reading(uuid) for uuid in uuids)
        # After a gap no meter watched: a start that no sample records gets an empty sample, and the
        # first reading's utilisation (NVML's last period only) is not spread over the whole gap.
        blind = journal.resumed
        if blind and not samples:
            blank = tuple(_no_reading(uuid) for uuid in uuids)
            journal.append(Sample(t_ns=0, running=True, cpu_ms=0, rss_bytes=0, gpus=blank))
        baseline = 0 if self.count_from_start else self._baseline()
        if on_start is not None:
            on_start()
        pidfd = _pidfd(self.pid)
        complete = False
        run_start = journal.elapsed_ns()
        try:
            tick = 0
            while True:
                sample = self._sample(probe, journal.elapsed_ns, baseline, samples[-1] if samples else None)
                if unread is not None:
                    sample = replace(sample, gpus=unread)
                if blind:
                    sample = replace(sample, gpus=tuple(replace(gpu, utilization_percent=None) for gpu in sample.gpus))
                    blind = False
                journal.append(sample)
                if not sample.running or (done is not None and done.is_set()):
                    complete = True
                    break
                now = journal.elapsed_ns()
                if timeout_s is not None and now - run_start >= timeout_s * _NS_PER_S:
                    break
                # Fixed grid, no drift: the next tick after now (ticks missed under load are skipped).
                tick = max(tick + 1, now // interval_ns + 1)
                self._wait(pidfd, done, (tick * interval_ns - now) / _NS_PER_S)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return _usage_record(
            self.job_id, self.pid, uuids, interval_ns, journal.header.started_unix_ns, complete, samples
        )

    @staticmethod
    def _wait(pidfd: int | None, done: threading.Event | None, seconds: float) -> None:
        if seconds <= 0:
            return
        if pidfd is not None:
            select.select([pidfd], [], [], seconds)
        elif done is not None:
            done.wait(seconds)
        else:
            time.sleep(seconds)

    @staticmethod
    def _cpu_ticks(tree: dict[int, _Stat]) -> int:
        return sum(stat.cpu_ticks for stat in tree.values())

    def _baseline(self) -> int:
        """The CPU time not charged to the job: clock ticks of the tree, or the source's ms."""
        if self.usage_source is not None:
            return self.usage_source().cpu_ms
        return self._cpu_ticks(_process_tree(self.pid))

    def _usage(self, baseline: int) -> tuple[bool, int, int]:
        """(running, CPU ms since the baseline, memory) now."""
        if self.usage_source is not None:
            reading = self.usage_source()
            return reading.running, max(reading.cpu_ms - baseline, 0), reading.rss_bytes
        tree = _process_tree(self.pid)
        root = tree.get(self.pid)
        running = root is not None and root.state not in ("Z", "X")
        cpu_ms = max(self._cpu_ticks(tree) - baseline, 0) * 1000 // _CLOCK_TICKS
        return running, cpu_ms, sum(_read_rss_bytes(pid) for pid in tree)

    def _sample(
        self, probe: _GpuProbe | None, clock: Callable[[], int], baseline: int, previous: Sample | None
    ) -> Sample:
        running, cpu_ms, rss = self._usage(baseline)
        gpus = probe.read() if probe else ()
        t_ns = clock()
        if previous is not None and t_ns <= previous.t_ns:
            t_ns = previous.t_ns + 1  # keep times strictly increasing even on a coarse clock
        # A grandchild orphaned to init takes its time with it when it exits: never go backwards.
        if previous is not None:
            cpu_ms = max(cpu_ms, previous.cpu_ms)
        return Sample(t_ns=t_ns, running=running, cpu_ms=cpu_ms, rss_bytes=rss, gpus=gpus)


def meter_pid(
    pid: int,
    *,
    gpus: Sequence[int | str] = (),
    interval_s: float = 1.0,
    timeout_s: float | None = None,
    job_id: int | None = None,
    journal: SampleJournal | None = None,
) -> UsageRecord:
    """Meters a running process (and its descendants) until it exits or ``timeout_s`` passes.

    For a child of this process the final sample reads its times as a zombie, so call this
    before ``Popen.wait()``. Another process's child is reaped by its parent, so its final
    CPU time is the last sample taken before it vanished. With a ``journal`` the samples are
    kept there too, on the job's time base (see ``SampleJournal``).
    """
    return JobMeter(pid, gpus, interval_s, job_id, count_from_start=True, journal=journal).run(timeout_s=timeout_s)


class JobFailed(Exception):
    """The metered callable raised; ``usage`` still holds what it used (``__cause__`` is its error)."""

    def __init__(self, usage: UsageRecord) -> None:
        super().__init__(f"metered job failed after {usage.summary.wall_seconds:.3f} s")
        self.usage = usage


@dataclass(frozen=True)
class MeteredCall(Generic[R]):
    result: R
    usage: UsageRecord


def meter_call(
    fn: Callable[[], R],
    *,
    gpus: Sequence[int | str] = (),
    interval_s: float = 1.0,
    job_id: int | None = None,
) -> MeteredCall[R]:
    """Runs ``fn`` in a worker thread and meters this process (CPU time from now on) meanwhile.

    The meter's own thread is part of this process, so its small cost is charged too.
    Raises JobFailed (with the usage) when ``fn`` raises.
    """
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as error:  # handed to the caller below, not swallowed
            outcome["error"] = error
        finally:
            done.set()

    meter = JobMeter(os.getpid(), gpus, interval_s, job_id, count_from_start=False)
    worker = threading.Thread(target=work, name="gpumarket-metered-job", daemon=True)
    # The worker starts only after the meter has read its CPU baseline: a busy worker holding
    # the GIL could otherwise run uncharged before the baseline is taken.
    usage = meter.run(done=done, on_start=worker.start)
    worker.join()
    if "error" in outcome:
        raise JobFailed(usage) from outcome["error"]
    return MeteredCall(outcome["result"], usage)


# --------------------------------------------------------------------------- billing


@dataclass(frozen=True)
class ChallengeResult:
    """One challenge the oracle ran during a job: when (its own clock, seconds) and whether it passed."""

    at: int | float
    passed: bool


def billable_gpu_seconds(challenge_times: Iterable[ChallengeResult | tuple[int | float, bool]], gpu_count: int) -> int:
    """GPU-seconds the provider may bill: time bracketed by passing challenges, times gpu_count.

    The challenges (start, heartbeats, end) must be in strictly increasing time order. The
    interval between two consecutive challenges is billable only when both passed: a failing
    challenge voids the intervals on either side of it, since nothing proves the GPUs were there
    then. So a failed start bills from the first pass that follows, a failed end bills up to the
    last pass before it, and fewer than two challenges bill nothing. The sum is rounded down to
    whole GPU-seconds (rounding never favours the one who is paid); it is exact for float
    timestamps too, as each is taken at its exact binary value.
    """
    if isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 1:
        raise ValueError(f"billable_gpu_seconds: gpu_count must be an int >= 1, got {gpu_count!r}")
    results = [_as_challenge(item, i) for i, item in enumerate(challenge_times)]
    for i, (before, after) in enumerate(pairwise(results)):
        if not after.at > before.at:
            raise ValueError(
                f"billable_gpu_seconds: challenge {i + 1} at {after.at} is not after challenge {i} at {before.at}"
                " (challenges must be sorted by time, without duplicates)"
            )
    total = sum(
        (
            Fraction(after.at) - Fraction(before.at)
            for before, after in pairwise(results)
            if before.passed and after.passed
        ),
        Fraction(0),
    )
    return math.floor(total * gpu_count)


def _as_challenge(item: ChallengeResult | tuple[int | float, bool], index: int) -> ChallengeResult:
    if isinstance(item, ChallengeResult):
        at, passed = item.at, item.passed
    else:
        try:
            at, passed = item
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"billable_gpu_seconds: challenge {index} is not a (timestamp, passed) pair: {item!r}"
            ) from error
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise ValueError(f"billable_gpu_seconds: challenge {index} timestamp must be a finite number, got {at!r}")
    if not isinstance(passed, bool):
        raise ValueError(f"billable_gpu_seconds: challenge {index} passed must be a bool, got {passed!r}")
    return ChallengeResult(at, passed)
