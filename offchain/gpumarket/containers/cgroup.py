"""A container's CPU time, memory and process count, read from its cgroup (v1 or v2).

The engine puts each container in a cgroup of its own and caps it there (memory, CPU quota,
pids). The same cgroup counts what every process of the container used, the ones that have
exited included, so it is the meter's source for a container job: ``/proc``'s process tree
would lose a process the container's init reaped, and would miss nothing else.

``ContainerCgroup.of_pid(pid)`` finds the cgroup of the container's main process (its host pid)
from ``/proc/<pid>/cgroup``, and where each hierarchy is mounted from ``/proc/self/mountinfo``
(this process's view: the agent may itself run in a container). Per resource, a v1 controller
is used where the process has one (``cpuacct``, ``memory``, ``pids``), else the unified (v2)
hierarchy: a "hybrid" host mounts both, with the controllers on v1. ``read()`` returns a
``CgroupUsage`` or None once the cgroup is gone (the engine removes it when the container
ended; the readings then have to be the last ones taken).

- v1: ``cpuacct.usage`` (ns), ``memory.usage_in_bytes``, ``memory.max_usage_in_bytes`` (the
  peak since the cgroup was made), ``memory.oom_control`` (``oom_kill``), ``pids.current``.
- v2: ``cpu.stat`` (``usage_usec``), ``memory.current``, ``memory.peak`` (kernels from 5.19;
  None before: a caller then keeps the largest ``memory.current`` it saw), ``memory.events``
  (``oom_kill``), ``pids.current``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupUsage", "ContainerCgroup", "read_cgroup"]

_PROC = Path("/proc")


@dataclass(frozen=True)
class CgroupUsage:
    """What a container used, at one instant."""

    cpu_ms: int  # CPU time of all its processes so far (exited ones included)
    memory_bytes: int  # charged now (resident memory, page cache, /dev/shm, kernel memory)
    memory_peak_bytes: int | None  # the most ever charged; None where the kernel does not say
    pids: int | None  # processes and threads now
    oom_kills: int | None  # processes the kernel killed for the cgroup's memory limit


@dataclass(frozen=True)
class _Mount:
    root: str  # the part of the hierarchy this mount shows (mountinfo field 4)
    point: Path


def _mounts(mountinfo: Path) -> tuple[dict[str, _Mount], _Mount | None]:
    """v1 mounts by controller, and the v2 (unified) mount, from a mountinfo file."""
    v1: dict[str, _Mount] = {}
    v2: _Mount | None = None
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        # Octal escapes (\040 for a space) are mountinfo's way of writing odd characters.
        mount = _Mount(fields[3], Path(_unescape(fields[4])))
        if tail[0] == "cgroup2":
            v2 = v2 or mount
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                v1.setdefault(option, mount)
    return v1, v2


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape") if "\\" in text else text


def _under(mount: _Mount, cgroup_path: str) -> Path:
    """Where ``cgroup_path`` (as /proc/<pid>/cgroup names it) lies under ``mount``."""
    relative = cgroup_path
    if mount.root != "/" and (cgroup_path == mount.root or cgroup_path.startswith(mount.root + "/")):
        relative = cgroup_path[len(mount.root) :]
    return mount.point / relative.lstrip("/")


def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def _read_key(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed file (``cpu.stat``, ``memory.events``, ``memory.oom_control``)."""
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def _optional(read: Callable[[], int | None]) -> int | None:
    """A reading the kernel may not offer (an older kernel, a controller not mounted): None then."""
    try:
        return read()
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class ContainerCgroup:
    """The cgroup files of one container; ``read`` them while it lasts."""

    cpu: Path  # cpuacct.usage (v1) or cpu.stat (v2)
    memory: Path  # the memory controller's directory
    pids: Path | None  # the pids controller's directory
    v1_cpu: bool
    v1_memory: bool

    @classmethod
    def of_pid(cls, pid: int, *, proc: Path = _PROC) -> ContainerCgroup | None:
        """The cgroup of process ``pid``; None when the process is gone or its cgroup cannot be
        located (no CPU or memory accounting mounted here)."""
        try:
            membership = (proc / str(pid) / "cgroup").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        v1_mounts, v2_mount = _mounts(proc / "self" / "mountinfo")
        v1_paths: dict[str, str] = {}
        v2_path: str | None = None
        for line in membership.splitlines():
            hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if hierarchy == "0" and controllers == "":
                v2_path = path
            for controller in controllers.split(","):
                if controller:
                    v1_paths[controller] = path

        def v1(controller: str) -> Path | None:
            if controller in v1_paths and controller in v1_mounts:
                return _under(v1_mounts[controller], v1_paths[controller])
            return None

        v2 = _under(v2_mount, v2_path) if v2_mount is not None and v2_path is not None else None
        cpuacct, memory_v1, pids = v1("cpuacct"), v1("memory"), v1("pids")
        cpu = cpuacct / "cpuacct.usage" if cpuacct is not None else (v2 / "cpu.stat" if v2 is not None else None)
        memory = memory_v1 if memory_v1 is not None else v2
        if cpu is None or memory is None:
            return None
        return cls(
            cpu=cpu,
            memory=memory,
            pids=pids if pids is not None else v2,
            v1_cpu=cpuacct is not None,
            v1_memory=memory_v1 is not None,
        )

    def read(self) -> CgroupUsage | None:
        """The container's usage now; None once its cgroup is gone."""
        try:
            if self.v1_cpu:
                cpu_ms = _read_int(self.cpu) // 1_000_000
            else:
                usage_usec = _read_key(self.cpu, "usage_usec")
                if usage_usec is None:
                    return None
                cpu_ms = usage_usec // 1000
            if self.v1_memory:
                current = _read_int(self.memory / "memory.usage_in_bytes")
                peak = _optional(lambda: _read_int(self.memory / "memory.max_usage_in_bytes"))
                oom = _optional(lambda: _read_key(self.memory / "memory.oom_control", "oom_kill"))
            else:
                current = _read_int(self.memory / "memory.current")
                peak = _optional(lambda: _read_int(self.memory / "memory.peak"))
                oom = _optional(lambda: _read_key(self.memory / "memory.events", "oom_kill"))
        except (FileNotFoundError, ProcessLookupError):
            return None  # removed with the container
        except OSError as error:
            if error.errno == errno.ENODEV:  # a file of a cgroup being removed
                return None
            raise
        pids_dir = self.pids
        pids = None if pids_dir is None else _optional(lambda: _read_int(pids_dir / "pids.current"))
        return CgroupUsage(cpu_ms=cpu_ms, memory_bytes=current, memory_peak_bytes=peak, pids=pids, oom_kills=oom)


def read_cgroup(pid: int) -> CgroupUsage | None:
    """The usage of the cgroup of process ``pid`` now; None when it cannot be read."""
    cgroup = ContainerCgroup.of_pid(pid)
    return None if cgroup is None else cgroup.read()
