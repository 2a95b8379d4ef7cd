"""The container runtime: runs each job in an OCI container under Podman, with the same job
directory, limits, meter and result as the process runtime (runner.py), and the same interface
(gpumarket.provider.runtime.JobRuntime).

Each job gets a fresh directory ``<root>/job-<id>/`` (jobdir.py), plus what this runtime keeps::

    container_id   the container's id, written by podman as it creates it (--cidfile)
    container.log  the container's output as the engine logs it (k8s-file; containers/logs.py)
    pid            the host pid of the container's main process, written by conmon when the
                   container is initialized (--pidfile); its modification time is then set to
                   the container's start

The container (named ``gpumarket-<owner hash>-job-<id>``, labelled ``gpumarket.owner=<owner>``
and ``gpumarket.job=<id>``, so an agent finds its own and only its own) runs the spec's image,
pinned by digest and never pulled at start (``prepare`` got it before), as a non-root user
(``ContainerSettings.user``), with:

- a read-only root and no tmpfs of the engine's own: the job's ``work/`` directory, mounted at
  /work (its working directory, where outputs are read from), is the only writable place, besides
  /dev/shm (``shm_bytes``, memory counted against the memory limit). Python needs no /tmp: its
  ``tempfile`` falls back to the working directory (the tests check that a job runs, writes /work,
  and cannot write / or /tmp);
- no capabilities (``--cap-drop all``), ``no-new-privileges``, no network unless the spec names
  one the provider offers ("none" always; "host" never);
- cgroup limits: memory without swap (``max_memory_bytes``), CPU quota (``cpu_millis``), pids
  (``max_pids``); the engine's PID namespace, so when the main process ends every process the
  job started ends with it (``setsid`` escapes nothing);
- only its assigned GPUs (CDI names ``nvidia.com/gpu=<index>``), and ``catatonit`` as its init
  (``--init``) so SIGTERM reaches the job's program and zombies are reaped;
- exactly the spec's environment (and the image's): the agent's (proxy variables included) is
  never passed in.

Limits the agent enforces as the process runtime does: wall time (the spec's ``max_seconds``, or
less when capped at the job's paid time; written to the job directory, so a restarted agent
applies the same limit from the recorded start) and output (stdout + stderr, counted from the
engine's log every ``poll_s``; cut to ``max_output_bytes`` at the end). Stopping writes
``stop_reason`` first, then ``podman kill --signal TERM``, then KILL after ``kill_grace_s``.

Metering is ``JobMeter`` with the container's cgroup as its usage source (containers/cgroup.py):
the CPU time of every process the container ran and, as each sample's ``rss_bytes``, the
cgroup's memory high-water mark so far (so the record's ``max_rss_bytes`` is the container's
memory peak); NVML on the assigned GPUs as the process runtime. The engine removes a container's
cgroup within milliseconds of its end, so the meter must already be watching then: the container
is created and initialized (``podman container init``: the runtime makes its cgroup and its main
process, which waits to exec the job), the meter starts (it wakes the instant that process exits,
through a pidfd, and takes its last reading before the cgroup goes), and only then is the
container started. Were the cgroup gone first (a loaded machine), the last reading taken stands:
at most one interval of CPU time is lost. The journal is begun before the container is created:
creating and starting it is metered, getting its image (``prepare``) is not.

When the container ends: its exit code and finish time (nanoseconds) come from the engine (a
memory kill, the cgroup's oom_kill count or the engine's OOMKilled, is logged and the exit code 137
kept; a job the agent stopped reports no exit code, as in the process runtime, while its
exit_status file keeps the container's), ``exit_status`` is written with the finish time as
its modification time, the log is split into ``stdout`` and ``stderr``, ``jobdir.conclude``
writes usage.json and result.json, and only then is the container removed. Each step can be
repeated after a crash with the same hashes: the log does not change once the container
exited, and everything ``conclude`` reads is in the job directory. An agent that restarts
follows a running container again (``adopt``: the meter goes on with the journal) or records
one that ended while no agent followed (``finalize``: the engine's FinishedAt is the end time).
``sweep`` removes this agent's containers of jobs it no longer keeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gpumarket.agentapi.spec import (
    CONTAINER_WORKDIR,
    DEFAULT_NETWORK,
    AnyJobSpec,
    ContainerJobSpec,
)
from gpumarket.containers.cgroup import ContainerCgroup
from gpumarket.containers.engine import (
    IMAGE_TOO_LARGE,
    IMAGE_UNAVAILABLE,
    ContainerConfig,
    ContainerState,
    EngineError,
    ImageUnavailable,
    PodmanEngine,
)
from gpumarket.containers.logs import LogCounter, split_log
from gpumarket.containers.registry import RegistryClient
from gpumarket.measure.metering import (
    JobMeter,
    SampleJournal,
    UsageReading,
    UsageRecord,
)
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
from gpumarket.provider.runner import process_start_ticks, process_state

__all__ = [
    "JOB_LABEL",
    "OWNER_LABEL",
    "ContainerJob",
    "ContainerRunner",
    "ContainerSettings",
    "check_offer",
    "container_id_file",
    "container_log_file",
    "container_refusal",
    "offered_networks",
]

log = logging.getLogger(__name__)

OWNER_LABEL: Final = "gpumarket.owner"
JOB_LABEL: Final = "gpumarket.job"
GPU_DEVICE_STYLES: Final = ("cdi",)  # "docker" (--gpus) is reserved for later
_INIT_PATHS: Final = ("/usr/libexec/podman/catatonit", "/usr/bin/catatonit")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
_USER = re.compile(r"([0-9]+):([0-9]+)")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
# After the main process exits, conmon records the exit for the engine within milliseconds;
# this bounds the wait for it should conmon itself be gone.
_EXIT_RECORD_WAIT_S = 10.0


def container_id_file(paths: JobPaths) -> Path:
    return paths.root / "container_id"


def container_log_file(paths: JobPaths) -> Path:
    return paths.root / "container.log"


def check_offer(networks: Sequence[str], max_image_bytes: int, pull_timeout_s: float) -> None:
    """ValueError unless a provider's container offer is one this runtime serves safely."""
    if "host" in networks:
        raise ValueError("network 'host' is never offered: a job would reach the provider's own services")
    if max_image_bytes < 1 or not pull_timeout_s > 0:
        raise ValueError("max_image_bytes and pull_timeout_s must be positive")


@dataclass(frozen=True)
class ContainerSettings:
    """How this agent runs containers.

    ``engine``: podman; ``owner``: the label value that marks this agent's containers (the
    agent passes its provider address and a hash of its job root, so two agents on one host
    never touch each other's); ``user``: ``uid:gid`` jobs run as (never root); ``networks``:
    networks a spec may name besides "none"; ``max_image_bytes``: the largest image ``prepare``
    pulls (as its registry's manifest declares it); ``pull_timeout_s``: one pull's limit;
    ``registries``: base URLs of registries not served at ``https://<host>`` (host[:port] ->
    URL, e.g. a plain-HTTP one on loopback), used to size images; ``gpu_device_style``: how
    GPUs are given ("cdi" only, for now); ``init``: catatonit as each container's init, where
    it is installed."""

    engine: PodmanEngine
    owner: str
    user: str = "65534:65534"
    networks: tuple[str, ...] = ()
    max_image_bytes: int = 20 * 2**30
    pull_timeout_s: float = 600.0
    registries: Mapping[str, str] = field(default_factory=dict)
    gpu_device_style: str = "cdi"
    init: bool = True

    def __post_init__(self) -> None:
        if not _OWNER.fullmatch(self.owner):
            raise ValueError(
                f"container owner {self.owner[:80]!r}: expected 1-200 of [A-Za-z0-9_.:-], not starting with a symbol"
            )
        user = _USER.fullmatch(self.user)
        if user is None:
            raise ValueError(f"container user {self.user!r}: expected numeric uid:gid (e.g. 65534:65534)")
        if int(user.group(1)) == 0:
            raise ValueError("container user: jobs never run as root (uid 0) in their containers")
        check_offer(self.networks, self.max_image_bytes, self.pull_timeout_s)
        if self.gpu_device_style not in GPU_DEVICE_STYLES:
            raise ValueError(
                f"gpu_device_style {self.gpu_device_style!r} is not supported (only {', '.join(GPU_DEVICE_STYLES)};"
                " 'docker' is reserved for later)"
            )

    @property
    def offered_networks(self) -> tuple[str, ...]:
        """The networks a spec may name: "none" first, always."""
        return offered_networks(self.networks)

    @property
    def uid_gid(self) -> tuple[int, int]:
        uid, gid = self.user.split(":")
        return int(uid), int(gid)

    @property
    def owner_hash(self) -> str:
        return hashlib.sha256(self.owner.encode()).hexdigest()[:12]


def offered_networks(networks: Sequence[str]) -> tuple[str, ...]:
    """The networks a spec may name where a provider offers ``networks``: "none" first, always."""
    return (DEFAULT_NETWORK, *dict.fromkeys(n for n in networks if n != DEFAULT_NETWORK))


def container_refusal(spec: AnyJobSpec, offered: Sequence[str]) -> str | None:
    """Why a provider running jobs in containers, with the networks ``offered``, does not run
    ``spec`` (a version 1 spec, or a network not offered); None when it does."""
    if not isinstance(spec, ContainerJobSpec):
        return "this provider runs jobs in containers; a version 1 spec (a host process) is not accepted"
    if spec.network not in offered:
        return f"network {spec.network!r} is not offered by this provider (offered: {', '.join(offered)})"
    return None


def _find_init() -> str | None:
    for path in _INIT_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("catatonit")


def _main_process_alive(pid: int, start_ticks: int | None, container_id: str) -> bool:
    """Whether ``pid`` is still the container's main process: running, same start, in its cgroup."""
    state = process_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    if start_ticks is not None and process_start_ticks(pid) != start_ticks:
        return False
    try:
        return container_id in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


class _CgroupSource:
    """The meter's usage source for one container: its main process tells whether it runs,
    its cgroup what it used. The cgroup goes with the container, so the last reading stands."""

    def __init__(self, job_id: int, pid: int, start_ticks: int | None, container_id: str) -> None:
        self.job_id = job_id
        self.pid = pid
        self.start_ticks = start_ticks
        self.container_id = container_id
        self._cgroup: ContainerCgroup | None = None
        self._warned = False
        self.cpu_ms = 0
        self.peak_bytes = 0
        self.oom_kills = 0

    def __call__(self) -> UsageReading:
        running = _main_process_alive(self.pid, self.start_ticks, self.container_id)
        if self._cgroup is None and running:
            self._cgroup = ContainerCgroup.of_pid(self.pid)
            if self._cgroup is None and not self._warned:
                self._warned = True
                log.warning(
                    "job %d: the cgroup of container %s cannot be read here: its CPU time and memory are not metered",
                    self.job_id,
                    self.container_id[:12],
                )
        usage = self._cgroup.read() if self._cgroup is not None else None
        if usage is not None:
            self.cpu_ms = max(self.cpu_ms, usage.cpu_ms)
            peak = usage.memory_peak_bytes if usage.memory_peak_bytes is not None else usage.memory_bytes
            self.peak_bytes = max(self.peak_bytes, peak)
            self.oom_kills = max(self.oom_kills, usage.oom_kills or 0)
        return UsageReading(running=running, cpu_ms=self.cpu_ms, rss_bytes=self.peak_bytes)


class ContainerJob:
    """A started (or adopted) container job; ``wait`` follows it to the end and returns its RunResult."""

    def __init__(
        self,
        runner: ContainerRunner,
        job_id: int,
        spec: ContainerJobSpec,
        gpus: tuple[int, ...],
        container_id: str,
        pid: int,
        start_ticks: int,
        started_at: float,
        journal: SampleJournal,
        *,
        max_seconds: float | None,
        resumed: bool,
    ) -> None:
        self._runner = runner
        self.config = runner.config
        self.job_id = job_id
        self.spec = spec
        self.gpus = gpus
        self.paths = runner.paths(job_id)
        self.container_id = container_id
        self.pid = pid
        self.start_ticks = start_ticks
        self.started_at = started_at
        # The wall-time limit from started_at: the spec's, or less when capped at the paid time.
        self.max_seconds = wall_limit(spec, max_seconds)
        self._resumed = resumed
        self._stop_reason: StopReason | None = None
        self._lock = threading.Lock()
        self._ended = threading.Event()
        # The meter runs from now on, not from ``wait``: the container's cgroup (what it used) is
        # removed within milliseconds of its end, so only a meter already watching reads it last.
        self._source = _CgroupSource(job_id, pid, start_ticks or None, container_id)
        self._usage: UsageRecord | None = None
        self._meter_error: Exception | None = None
        gpus_metered = gpus if self.config.meter_gpus else ()
        self._meter = JobMeter(
            pid, gpus_metered, self.config.meter_interval_s, job_id, journal=journal, usage_source=self._source
        )
        self._metering = threading.Thread(target=self._run_meter, name=f"job-{job_id}-meter", daemon=True)
        self._metering.start()

    @property
    def resumed(self) -> bool:
        return self._resumed

    def stop(self, reason: StopReason = "stopped") -> None:
        """SIGTERM the container now, SIGKILL after the grace period (from another thread)."""
        with self._lock:
            if self._stop_reason is not None or self._ended.is_set():
                return
            self._stop_reason = reason
            record_stop(self.paths, self.job_id, reason)  # before the signal
        log.info("job %d: stopping (%s)", self.job_id, reason)
        self._signal("TERM")
        threading.Thread(target=self._kill_after_grace, name=f"job-{self.job_id}-kill", daemon=True).start()

    def _signal(self, name: str) -> None:
        try:
            self._runner.settings.engine.kill(self.container_id, name)
        except EngineError as error:
            # It ended meanwhile, or the engine failed: then the kernel delivers the signal.
            if _main_process_alive(self.pid, self.start_ticks or None, self.container_id):
                log.warning("job %d: podman kill failed (%s); signalling pid %d", self.job_id, error, self.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self.pid, getattr(signal, f"SIG{name}"))

    def _kill_after_grace(self) -> None:
        if not self._ended.wait(self.config.kill_grace_s):
            self._signal("KILL")

    def _watch(self) -> None:
        limits = self.spec.limits
        deadline = time.monotonic() + (self.started_at + self.max_seconds - time.time())
        output = LogCounter(container_log_file(self.paths))
        while not self._ended.wait(self.config.poll_s):
            if time.monotonic() >= deadline:
                self.stop("timeout")
                return
            if output.poll() > limits.max_output_bytes:
                self.stop("output_limit")
                return

    def _run_meter(self) -> None:
        try:
            self._usage = self._meter.run()
        except Exception as error:  # noqa: BLE001  # handed to wait(), which raises it
            self._meter_error = error
        finally:
            with self._lock:
                self._ended.set()  # a stop from now on has nothing to stop

    def _join_meter(self) -> UsageRecord:
        self._metering.join()
        if self._meter_error is not None:
            raise self._meter_error
        assert self._usage is not None
        return self._usage

    def wait(self) -> RunResult:
        """Blocks until the container ends; then records its ending and result (usage.json,
        result.json) and removes it. Call it once."""
        watchdog = threading.Thread(target=self._watch, name=f"job-{self.job_id}-watch", daemon=True)
        watchdog.start()
        try:
            usage = self._join_meter()
        except ValueError:
            self._runner._remove_container(self.job_id, self.container_id)  # nothing may run unmetered
            raise
        finally:
            with self._lock:
                self._ended.set()
            watchdog.join()
        state = self._runner._exited_state(self.container_id)
        if state is None or not state.exited:
            log.warning(
                "job %d: the engine has no exit status of container %s (%s)",
                self.job_id,
                self.container_id[:12],
                "it is gone" if state is None else f"it is {state.status}",
            )
            exit_code, finished_ns = None, time.time_ns()
        else:
            exit_code, finished_at_ns = state.exit_code, state.finished_at_ns
            assert finished_at_ns is not None  # exited
            finished_ns = finished_at_ns
        if self._source.oom_kills or (state is not None and state.oom_killed):
            self._runner._log_oom(self.job_id, self.spec, exit_code)
        return self._runner._conclude(
            self.job_id,
            self.spec,
            self.container_id,
            exit_code=exit_code,
            finished_ns=finished_ns,
            stop_reason=self._stop_reason,
            usage=lambda: usage,
            started_at=self.started_at,
            resumed=self.resumed,
        )


class ContainerRunner(OnThisMachine):
    """The container runtime (gpumarket.provider.runtime.JobRuntime): starts jobs in containers
    under ``config.root`` and finds them again after an agent restart."""

    name = "container"
    pulls_images = True

    def __init__(self, config: RunnerConfig, settings: ContainerSettings) -> None:
        root = str(Path(config.root))
        if ":" in root or "," in root:
            raise ValueError(f"job root {root!r}: a path with ':' or ',' cannot be mounted into a container")
        self.config = config
        self.settings = settings
        # Sizes images before a pull the way the oracles size them (gpumarket.oracle.images).
        self.sizer = RegistryClient(settings.registries, default_https=True)
        self._init_path = _find_init() if settings.init else None
        if settings.init and self._init_path is None:
            log.warning(
                "catatonit is not installed: containers run without an init (SIGTERM then reaches "
                "only programs that handle it; the KILL after the grace period ends the others)"
            )
        Path(config.root).mkdir(parents=True, exist_ok=True)

    def paths(self, job_id: int) -> JobPaths:
        return JobPaths.of(self.config.root, job_id)

    def container_name(self, job_id: int) -> str:
        return f"gpumarket-{self.settings.owner_hash}-job-{job_id}"

    def offer(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "networks": list(self.settings.offered_networks),
            "max_image_bytes": self.settings.max_image_bytes,
        }

    def refusal(self, spec: AnyJobSpec) -> str | None:
        """Why this runtime does not run ``spec``: a version 1 spec, or a network not offered."""
        return container_refusal(spec, self.settings.offered_networks)

    # ------------------------------------------------------------------ images

    def prepare(self, job_id: int, spec: AnyJobSpec, *, timeout_s: float | None = None) -> None:
        """Makes sure the spec's image is here: found locally (by its pinned reference, whatever
        its size: the provider keeps it), or sized on its registry and pulled, all within
        ``pull_timeout_s`` (and ``timeout_s`` when given). ImageUnavailable says why not.
        Writes nothing in the job's directory: the job has none before it starts.

        The size is the one the oracles check a claim against (gpumarket.oracle.images): what
        the registry's manifest declares, config and layers, read with the same client. An
        image over ``max_image_bytes`` by that measure is refused before a byte of it is
        pulled; one whose manifest this agent cannot read (a registry that wants credentials
        the engine has and this client has not) is pulled without the limit, since a refusal
        the oracles could not confirm would be no refusal at all."""
        if not isinstance(spec, ContainerJobSpec):
            raise TypeError(f"job {job_id}: {self.refusal(spec)}")
        engine, image = self.settings.engine, spec.image
        limit_s = self.settings.pull_timeout_s if timeout_s is None else min(timeout_s, self.settings.pull_timeout_s)
        deadline = time.monotonic() + limit_s
        try:
            if engine.image_exists(image):
                return
            self._check_size(job_id, spec, timeout_s=limit_s)
            log.info("job %d: pulling %s (at most %.0f s)", job_id, image, deadline - time.monotonic())
            engine.pull(image, timeout_s=max(deadline - time.monotonic(), 0.001))
            log.info(
                "job %d: pulled %s in %.1f s, %d bytes unpacked",
                job_id,
                image,
                limit_s - (deadline - time.monotonic()),
                engine.image_size(image),
            )
        except EngineError as error:
            raise ImageUnavailable(IMAGE_UNAVAILABLE, f"podman could not look at {image}: {error}") from None

    def _check_size(self, job_id: int, spec: ContainerJobSpec, *, timeout_s: float) -> None:
        check = self.sizer.check(spec.image_reference, timeout_s=timeout_s)
        limit = self.settings.max_image_bytes
        if not check.found or check.size_bytes is None:
            log.warning(
                "job %d: could not size %s before pulling it (%s: %s); pulling it without the max_image_bytes limit",
                job_id,
                spec.image,
                check.status.value,
                check.detail,
            )
            return
        if check.size_bytes > limit:
            raise ImageUnavailable(
                IMAGE_TOO_LARGE,
                (
                    f"{spec.image} is {check.size_bytes} bytes as its registry's manifest declares it (config and "
                    f"layers), more than this provider's max_image_bytes {limit}"
                ),
            )

    # ------------------------------------------------------------------ starting

    def _container_config(
        self, job_id: int, spec: ContainerJobSpec, gpus: Sequence[int], paths: JobPaths
    ) -> ContainerConfig:
        limits = spec.limits
        return ContainerConfig(
            image=spec.image,
            name=self.container_name(job_id),
            labels={OWNER_LABEL: self.settings.owner, JOB_LABEL: str(job_id)},
            args=list(spec.args),
            entrypoint=list(spec.command) if spec.command else None,
            env=dict(spec.env),
            user=self.settings.user,
            workdir=CONTAINER_WORKDIR,
            binds=[(paths.work, CONTAINER_WORKDIR)],
            read_only=True,
            network=spec.network,
            memory_bytes=limits.max_memory_bytes,
            cpu_millis=limits.cpu_millis,
            pids_limit=limits.max_pids,
            shm_bytes=limits.shm_bytes,
            devices=[f"nvidia.com/gpu={gpu}" for gpu in gpus],
            init_path=self._init_path,
            log_path=container_log_file(paths),
            pidfile=paths.pidfile,
            cidfile=container_id_file(paths),
        )

    def _own_work_dir(self, work: Path) -> None:
        """The job's user must write its work directory (its only writable place)."""
        if os.geteuid() == 0:
            uid, gid = self.settings.uid_gid
            os.chown(work, uid, gid)
        else:
            # Rootless: the container's uid maps to a subordinate uid of ours; only a mode reaches it.
            os.chmod(work, 0o777)

    def start(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int] = (), *, max_seconds: float | None = None
    ) -> ContainerJob:
        """Creates the job's fresh directory and starts its container; FileExistsError if the
        directory exists (a job id runs once), EngineError (an OSError) when podman cannot start
        it. ``max_seconds`` caps the spec's wall-time limit (the agent passes the job's paid time
        left); it must be positive. The image must be here (``prepare``)."""
        refusal = self.refusal(spec)
        if refusal is not None:
            raise ValueError(f"job {job_id}: {refusal}")
        assert isinstance(spec, ContainerJobSpec)
        limit = start_limit(job_id, spec, max_seconds)
        paths = self.paths(job_id)
        paths.root.mkdir(parents=False)
        paths.work.mkdir()
        self._own_work_dir(paths.work)
        # Before the container exists, so an agent that restarts while it runs never lacks them:
        # the limit, and the start that the meter's clock (and any later meter's) counts from.
        write_atomic(paths.max_seconds, repr(float(limit)).encode())
        journal = SampleJournal.begin(paths.journal, job_id=job_id)
        engine = self.settings.engine
        # Created and initialized first: the runtime then made the container's cgroup and its main
        # process (waiting to exec the job), so the meter watches before the job's first instruction.
        try:
            container_id = engine.create(self._container_config(job_id, spec, gpus, paths))
        except EngineError:
            with contextlib.suppress(EngineError):  # a half-created container would hold the name
                engine.remove(self.container_name(job_id))
            raise
        try:
            engine.init(container_id)
            pid = self._recorded_pid(paths)  # conmon wrote it at init
            if pid is None:
                raise EngineError(
                    ["podman", "container", "init"],
                    0,
                    f"container {container_id[:12]} was initialized but its pid file is empty",
                )
        except EngineError:
            self._remove_container(job_id, container_id)
            raise
        start_ticks = process_start_ticks(pid) or 0  # 0: unknown (it is gone already; is_alive is then False)
        job = ContainerJob(
            self,
            job_id,
            spec,
            tuple(gpus),
            container_id,
            pid,
            start_ticks,
            time.time(),
            journal,
            max_seconds=limit,
            resumed=False,
        )
        try:
            engine.start(container_id)
        except EngineError:
            self._remove_container(job_id, container_id)  # its meter sees the end and stops
            job._metering.join()
            raise
        state = engine.inspect(container_id)
        started_ns = state.started_at_ns if state is not None and state.started_at_ns else time.time_ns()
        job.started_at = started_ns / 1e9
        with contextlib.suppress(FileNotFoundError):
            os.utime(paths.pidfile, ns=(started_ns, started_ns))  # recorded_start reads the start from it
        log.info(
            "job %d: started container %s (pid %d), image %s, gpus %s",
            job_id,
            container_id[:12],
            pid,
            spec.image,
            list(gpus) or "none",
        )
        if limit < spec.limits.max_seconds:
            log.info(
                "job %d: wall-time limit %.1f s (its paid time left), not the spec's %d s",
                job_id,
                limit,
                spec.limits.max_seconds,
            )
        return job

    def run(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int] = (), *, max_seconds: float | None = None
    ) -> RunResult:
        """``start`` and ``wait``."""
        return self.start(job_id, spec, gpus, max_seconds=max_seconds).wait()

    # ------------------------------------------------------------------ finding jobs again

    @staticmethod
    def _recorded_pid(paths: JobPaths) -> int | None:
        try:
            text = paths.pidfile.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() and int(text) > 0 else None

    def _container_id(self, job_id: int) -> str | None:
        """The job's container id: as podman recorded it, else found by the job's labels."""
        try:
            text = container_id_file(self.paths(job_id)).read_text().strip()
        except FileNotFoundError:
            text = ""
        if _CONTAINER_ID.fullmatch(text):
            return text
        for container in self.settings.engine.list(f"{OWNER_LABEL}={self.settings.owner}"):
            if container.labels.get(JOB_LABEL) == str(job_id):
                return container.id
        return None

    def _state(self, job_id: int) -> tuple[str | None, ContainerState | None]:
        container_id = self._container_id(job_id)
        return container_id, (self.settings.engine.inspect(container_id) if container_id else None)

    def find_started(self, job_id: int) -> tuple[int, int] | None:
        """(host pid, start ticks) of the job's running container's main process; None when the
        job never started a container or it no longer runs."""
        _, state = self._state(job_id)
        if state is None or not state.running or state.pid <= 0:
            return None
        ticks = process_start_ticks(state.pid)
        return (state.pid, ticks) if ticks is not None else None

    def recorded_start(self, job_id: int) -> tuple[int, float] | None:
        """(host pid, wall-clock start) from the job's pid file; None when it was never written."""
        paths = self.paths(job_id)
        pid = self._recorded_pid(paths)
        if pid is None:
            return None
        try:
            return pid, paths.pidfile.stat().st_mtime
        except FileNotFoundError:
            return None

    def is_alive(self, job_id: int, pid: int, start_ticks: int | None) -> bool:
        """Whether the job's container still runs ``pid`` (the same process, not a reused pid).
        Reads /proc only: no engine call."""
        try:
            container_id = container_id_file(self.paths(job_id)).read_text().strip()
        except FileNotFoundError:
            return False
        return bool(_CONTAINER_ID.fullmatch(container_id)) and _main_process_alive(
            pid, start_ticks or None, container_id
        )

    def has_ended(self, job_id: int) -> bool:
        """Whether the job's ending is known: its exit status recorded, or its container exited."""
        if self.paths(job_id).exit_status.exists():
            return True
        _, state = self._state(job_id)
        return state is not None and state.exited

    def _journal(self, job_id: int, started_at: float) -> SampleJournal:
        return resume_journal(self.paths(job_id), job_id, started_at)

    def adopt(
        self, job_id: int, spec: AnyJobSpec, gpus: Sequence[int], pid: int, start_ticks: int, started_at: float
    ) -> ContainerJob:
        """Follows a container a previous agent started; ProcessGone when it no longer runs. Its
        wall-time limit is the one written when it started, counted from ``started_at``; its
        meter goes on with the job's journal; a stop the previous agent began is carried out."""
        if not isinstance(spec, ContainerJobSpec):
            raise TypeError(f"job {job_id}: {self.refusal(spec)}")
        if not self.is_alive(job_id, pid, start_ticks):
            raise ProcessGone(f"job {job_id}: container process {pid} is gone")
        paths = self.paths(job_id)
        container_id = container_id_file(paths).read_text().strip()
        journal = self._journal(job_id, started_at)
        log.info(
            "job %d: re-attached to container %s (pid %d; metered since its start, %d samples journaled)",
            job_id,
            container_id[:12],
            pid,
            len(journal.samples),
        )
        job = ContainerJob(
            self,
            job_id,
            spec,
            tuple(gpus),
            container_id,
            pid,
            start_ticks,
            started_at,
            journal,
            max_seconds=read_limit(paths.max_seconds),
            resumed=True,
        )
        stopping = read_stop_reason(paths.stop_reason)
        if stopping is not None:
            job.stop(stopping)
        return job

    def finalize(
        self, job_id: int, spec: AnyJobSpec, pid: int, start_ticks: int | None, started_at: float
    ) -> RunResult:
        """Records a container that ended while no agent followed it, as ``wait`` would have:
        its exit status and end from the job's exit_status file when it was written, else from
        the engine (FinishedAt). ProcessGone when neither knows (the container is gone and left
        no exit status, or it has not ended). Its usage record runs from its start (the journal)
        to its end. Safe to repeat."""
        if not isinstance(spec, ContainerJobSpec):
            raise TypeError(f"job {job_id}: {self.refusal(spec)}")
        paths = self.paths(job_id)
        container_id = self._container_id(job_id)
        exit_code = read_exit_status(paths.exit_status)
        state = None if exit_code is not None or container_id is None else self.settings.engine.inspect(container_id)
        if exit_code is not None:
            finished_ns = paths.exit_status.stat().st_mtime_ns
        elif state is None:
            raise ProcessGone(f"job {job_id}: its container is gone and left no exit status")
        elif not state.exited:
            raise ProcessGone(f"job {job_id}: its container {state.id[:12]} has not ended (it is {state.status})")
        else:
            assert state.finished_at_ns is not None  # exited
            exit_code, finished_ns = state.exit_code, state.finished_at_ns
            if state.oom_killed:
                self._log_oom(job_id, spec, exit_code)
        log.info("job %d: ended while no agent followed it (exit %s)", job_id, exit_code)
        return self._conclude(
            job_id,
            spec,
            container_id,
            exit_code=exit_code,
            finished_ns=finished_ns,
            stop_reason=read_stop_reason(paths.stop_reason),
            usage=lambda: self._journal(job_id, started_at).conclude(
                pid=pid, interval_s=self.config.meter_interval_s, ended_unix_ns=finished_ns
            ),
            started_at=started_at,
            resumed=True,
        )

    # ------------------------------------------------------------------ ending

    def _exited_state(self, container_id: str) -> ContainerState | None:
        """The container's state once the engine recorded its exit (conmon does within
        milliseconds of the main process's); the last state seen after ``_EXIT_RECORD_WAIT_S``."""
        deadline = time.monotonic() + _EXIT_RECORD_WAIT_S
        while True:
            state = self.settings.engine.inspect(container_id)
            if state is None or state.exited or time.monotonic() >= deadline:
                return state
            time.sleep(self.config.poll_s)

    @staticmethod
    def _log_oom(job_id: int, spec: ContainerJobSpec, exit_code: int | None) -> None:
        log.warning(
            "job %d: a process of the container was killed for memory (limit %d bytes); exit %s kept",
            job_id,
            spec.limits.max_memory_bytes,
            exit_code,
        )

    def _conclude(
        self,
        job_id: int,
        spec: ContainerJobSpec,
        container_id: str | None,
        *,
        exit_code: int | None,
        finished_ns: int,
        stop_reason: StopReason | None,
        usage: Callable[[], UsageRecord],
        started_at: float,
        resumed: bool,
    ) -> RunResult:
        """Records an ended container's exit status (first: then the job directory alone tells
        how it ended), splits its log, concludes the job, then removes the container."""
        paths = self.paths(job_id)
        if exit_code is not None and not paths.exit_status.exists():
            write_atomic(paths.exit_status, f"{exit_code}\n".encode())
            os.utime(paths.exit_status, ns=(finished_ns, finished_ns))  # finalize reads the end from it
        if not paths.result.exists():  # after it, stdout and stderr are cut to the limit: leave them
            split_log(container_log_file(paths), paths.stdout, paths.stderr)
        result = conclude(
            job_id,
            spec,
            paths,
            # As the process runtime: a job the agent stopped has no exit status of its own.
            exit_code=None if stop_reason else exit_code,
            stop_reason=stop_reason,
            usage=usage,
            started_at=started_at,
            finished_at=finished_ns / 1e9,
            resumed=resumed,
        )
        if container_id is not None:
            self._remove_container(job_id, container_id)
        return result

    def _remove_container(self, job_id: int, container: str) -> None:
        try:
            self.settings.engine.remove(container)
        except EngineError as error:  # sweep removes it later
            log.warning("job %d: could not remove container %s: %s", job_id, container[:12], error)

    def discard(self, job_id: int) -> None:
        """Removes a job's container (if any) and directory (for a job that never started)."""
        container_id = None
        with contextlib.suppress(EngineError):
            container_id = self._container_id(job_id)
        self._remove_container(job_id, container_id or self.container_name(job_id))
        shutil.rmtree(self.paths(job_id).root, ignore_errors=True)

    def sweep(self, keep: set[int]) -> list[int]:
        """Removes this agent's containers (its owner label) whose job id is not in ``keep``,
        whatever their state; their job ids. Others' containers are never touched."""
        removed = []
        for container in self.settings.engine.list(f"{OWNER_LABEL}={self.settings.owner}"):
            if container.labels.get(OWNER_LABEL) != self.settings.owner:
                continue
            job = container.labels.get(JOB_LABEL, "")
            if not job.isdigit():
                log.warning(
                    "container %s has this agent's owner label but no job id (%r): left alone", container.id[:12], job
                )
                continue
            if int(job) in keep:
                continue
            self.settings.engine.remove(container.id)
            log.info("job %s: removed its leftover container %s (%s)", job, container.id[:12], container.state)
            removed.append(int(job))
        return sorted(removed)
