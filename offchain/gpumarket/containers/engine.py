"""The container engine: the Podman command line, wrapped.

``PodmanEngine`` runs ``podman`` as a subprocess, one argv list per call (never a shell string:
a job's arguments and environment reach podman byte for byte), each with a timeout, and parses
what it prints (``--format json``). Podman is daemonless: each call is a short process that
reads and writes the engine's state under /var/lib/containers, so an agent that restarts finds
its containers there as it left them, and containers outlive the agent (``conmon`` watches each
one and records its exit status).

What the container runtime needs and nothing more:

- ``run`` (``podman run --detach``), or ``create``, ``init`` and ``start`` one at a time, from a
  typed ``ContainerConfig`` (``run_argv`` and ``create_argv`` build the argv, pure functions).
- ``inspect``: a container's state (``ContainerState``: status, host pid of its main process,
  exit code, start and finish times to the nanosecond, OOMKilled, labels); None when no such
  container exists.
- ``kill`` (a signal), ``remove`` (forced, no stop timeout), ``list`` (by label, all states).
- images: ``image_exists``, ``pull`` (with its own timeout), ``image_size``, ``image_digest``,
  ``remove_image``.

Errors: ``EngineError`` (a podman command failed: which command, its exit status, the tail of
its stderr). It is an ``OSError``, as a program that cannot be started is: a caller that handles
a failed start of a host process handles a failed ``podman run`` the same way. ``ImageUnavailable``
says why a job's image cannot be had, as a stable ``code``:

- ``image_not_found``: the registry answered that it has no such manifest or repository
  ("manifest unknown", "name unknown", "not found"): definitive.
- ``image_unavailable``: anything else (registry unreachable, DNS, TLS, auth, a timeout, a short
  name no registry resolves): transient or unknown, worth retrying.
- ``image_too_large``: over the provider's ``max_image_bytes`` (raised by the runtime).

``podman`` runs with ``CONTAINERS_CONF`` when the engine is given a containers.conf (the project's
machines need deploy/podman/containers.conf: ulimits and runc), and with any extra environment
(a test's ``CONTAINERS_REGISTRIES_CONF``).
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "IMAGE_NOT_FOUND",
    "IMAGE_TOO_LARGE",
    "IMAGE_UNAVAILABLE",
    "ContainerConfig",
    "ContainerState",
    "ContainerSummary",
    "EngineError",
    "ImageUnavailable",
    "PodmanEngine",
    "classify_pull_error",
    "create_argv",
    "parse_timestamp_ns",
    "run_argv",
]

log = logging.getLogger(__name__)

IMAGE_NOT_FOUND: Final = "image_not_found"
IMAGE_UNAVAILABLE: Final = "image_unavailable"
IMAGE_TOO_LARGE: Final = "image_too_large"
_IMAGE_CODES: Final = (IMAGE_NOT_FOUND, IMAGE_UNAVAILABLE, IMAGE_TOO_LARGE)

# What a registry answers for a digest or repository it does not have (OCI distribution error
# codes MANIFEST_UNKNOWN and NAME_UNKNOWN, as containers/image prints them, or a plain 404).
_NOT_FOUND_MARKERS: Final = ("manifest unknown", "name unknown", "not found")
_STDERR_TAIL = 2000
_DEFAULT_TIMEOUT_S = 60.0
_NO_SUCH_CONTAINER = ("no such container", "no such object")


class EngineError(OSError):
    """A podman command failed: ``command`` (its argv), ``returncode`` (None: it timed out or
    could not be started) and ``stderr`` (the tail of what it printed)."""

    def __init__(self, command: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.command = tuple(command)
        self.returncode = returncode
        self.stderr = stderr[-_STDERR_TAIL:]
        what = " ".join(self.command[:3])
        status = "did not finish" if returncode is None else f"exited {returncode}"
        super().__init__(f"{what} ... {status}: {self.stderr.strip() or '(no error output)'}")

    def __reduce__(self) -> tuple[Any, ...]:  # OSError's own would call __init__ with its args
        return (EngineError, (self.command, self.returncode, self.stderr))


class ImageUnavailable(Exception):
    """A job's image cannot be had: ``code`` (image_not_found, image_unavailable or
    image_too_large) and ``detail`` (what the engine or the size check said)."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in _IMAGE_CODES:
            raise ValueError(f"ImageUnavailable: unknown code {code!r} (expected one of {', '.join(_IMAGE_CODES)})")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def classify_pull_error(stderr: str) -> str:
    """``image_not_found`` when podman pull's error says the registry has no such manifest or
    name, else ``image_unavailable``. Only the final ``Error:`` line counts: podman's retry
    warnings before it quote the same error."""
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    text = (lines[-1] if lines else stderr).lower()
    return IMAGE_NOT_FOUND if any(marker in text for marker in _NOT_FOUND_MARKERS) else IMAGE_UNAVAILABLE


# --------------------------------------------------------------------------- timestamps

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?(?:\s+\S+)?"
)


def parse_timestamp_ns(text: str) -> int | None:
    """Unix nanoseconds of an RFC 3339 timestamp as podman prints it (``2026-12-03T12:07:23.962010342Z``,
    or with a ``+hh:mm`` offset); None for Go's zero time (year 1: never started or finished)
    and for text that is no timestamp."""
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    if year <= 1:
        return None
    fraction = (match.group(7) or "").ljust(9, "0")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match.group(8) or "Z"
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + int(fraction)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ContainerState:
    """A container as ``podman container inspect`` reports it."""

    id: str
    name: str
    status: str  # created, running, paused, stopping, exited, stopped, ...
    pid: int  # host pid of the container's main process; 0 when it does not run
    exit_code: int
    oom_killed: bool
    started_at_ns: int | None  # unix ns; None when it never started
    finished_at_ns: int | None  # unix ns; None while it has not finished
    labels: dict[str, str]

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "stopping")

    @property
    def exited(self) -> bool:
        """It ran and ended (its exit code and finish time are final)."""
        return self.status in ("exited", "stopped") and self.finished_at_ns is not None

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ContainerState:
        state = data.get("State") or {}
        config = data.get("Config") or {}
        return cls(
            id=str(data["Id"]),
            name=str(data.get("Name", "")),
            status=str(state.get("Status", "")).lower(),
            pid=int(state.get("Pid") or 0),
            exit_code=int(state.get("ExitCode") or 0),
            oom_killed=bool(state.get("OOMKilled")),
            started_at_ns=parse_timestamp_ns(str(state.get("StartedAt", ""))),
            finished_at_ns=parse_timestamp_ns(str(state.get("FinishedAt", ""))),
            labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
        )


@dataclass(frozen=True)
class ContainerSummary:
    """A container as ``podman ps --all`` lists it."""

    id: str
    names: tuple[str, ...]
    state: str
    labels: dict[str, str]


@dataclass(frozen=True)
class ContainerConfig:
    """What ``podman run`` (or ``create``) is given; ``run_argv`` turns it into the argv.

    ``image`` is run as given (pinned by digest) and never pulled here (``--pull never``: the
    runtime gets images before a job starts). ``entrypoint`` replaces the image's entrypoint
    when given (podman's JSON-array form, so no shell splits it); ``args`` follow it (or
    replace the image's CMD). Memory is capped with no swap (``--memory-swap`` equal to
    ``--memory``). ``read_only`` roots get no tmpfs of podman's own (``--read-only-tmpfs=false``):
    the mounts given here are the only writable places, besides /dev/shm (``shm_bytes``, which is
    memory and counts against the memory limit). Proxy variables of the host are never passed
    in (``--http-proxy=false``): the environment is exactly ``env`` and the image's own."""

    image: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    entrypoint: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    workdir: str | None = None
    binds: Sequence[tuple[Path, str]] = ()  # (host directory, container path), read-write
    read_only: bool = True
    network: str = "none"
    memory_bytes: int | None = None
    cpu_millis: int | None = None  # 1000 = one CPU
    pids_limit: int | None = None
    shm_bytes: int | None = None
    devices: Sequence[str] = ()  # e.g. CDI names: nvidia.com/gpu=0
    cap_drop_all: bool = True
    no_new_privileges: bool = True
    init_path: str | None = None  # --init with this init (catatonit); None: no init
    log_path: Path | None = None  # the k8s-file log (see logs.py); None: the engine's default
    pidfile: Path | None = None  # conmon writes the main process's host pid here
    cidfile: Path | None = None  # podman writes the container id here as it creates it


def _cpus(millis: int) -> str:
    # Exact decimal: 1500 -> "1.500" (a float could print 0.30000000000000004).
    return f"{millis // 1000}.{millis % 1000:03d}"


def run_argv(config: ContainerConfig) -> list[str]:
    """The arguments after ``podman`` that create and start ``config``, detached."""
    return ["run", "--detach", *_options(config)]


def create_argv(config: ContainerConfig) -> list[str]:
    """The arguments after ``podman`` that create ``config`` (``init`` and ``start`` run it)."""
    return ["create", *_options(config)]


def _options(config: ContainerConfig) -> list[str]:
    argv = ["--pull", "never", "--http-proxy=false", "--name", config.name]
    for key, value in config.labels.items():
        argv += ["--label", f"{key}={value}"]
    if config.read_only:
        argv += ["--read-only", "--read-only-tmpfs=false"]
    for host, target in config.binds:
        host_text = str(host)
        if ":" in host_text or "," in host_text:
            raise ValueError(f"bind mount source {host_text!r} contains ':' or ',', which podman's -v cannot carry")
        argv += ["--volume", f"{host_text}:{target}:rw"]
    if config.workdir is not None:
        argv += ["--workdir", config.workdir]
    if config.user is not None:
        argv += ["--user", config.user]
    if config.cap_drop_all:
        argv += ["--cap-drop", "all"]
    if config.no_new_privileges:
        argv += ["--security-opt", "no-new-privileges"]
    argv += ["--network", config.network]
    if config.memory_bytes is not None:
        argv += ["--memory", str(config.memory_bytes), "--memory-swap", str(config.memory_bytes)]
    if config.cpu_millis is not None:
        argv += ["--cpus", _cpus(config.cpu_millis)]
    if config.pids_limit is not None:
        argv += ["--pids-limit", str(config.pids_limit)]
    if config.shm_bytes is not None:
        argv += ["--shm-size", str(config.shm_bytes)]
    for device in config.devices:
        argv += ["--device", device]
    if config.init_path is not None:
        argv += ["--init", "--init-path", config.init_path]
    for key, value in config.env.items():
        argv += ["--env", f"{key}={value}"]  # always NAME=VALUE: a bare NAME would copy the agent's
    if config.log_path is not None:
        argv += ["--log-driver", "k8s-file", "--log-opt", f"path={config.log_path}"]
    if config.pidfile is not None:
        argv += ["--pidfile", str(config.pidfile)]
    if config.cidfile is not None:
        argv += ["--cidfile", str(config.cidfile)]
    if config.entrypoint is not None:
        argv += ["--entrypoint", json.dumps(list(config.entrypoint))]
    return [*argv, "--", config.image, *config.args]


# --------------------------------------------------------------------------- the engine


# What a job's limits need: memory (and its high-water mark for the meter), CPU quota, pids.
LIMIT_CONTROLLERS: Final = ("cpu", "memory", "pids")


@dataclass(frozen=True)
class EngineHost:
    """How podman runs on this host (``podman info``)."""

    rootless: bool
    cgroup_version: str  # "v1" or "v2"
    cgroup_controllers: tuple[str, ...]  # those podman can use (rootless: those delegated to the user)

    def limits_refusal(self) -> str | None:
        """Why containers here would run without the limits a spec sets, or None. Podman as root
        enforces them on cgroups v1 and v2. Rootless podman ignores every limit on cgroups v1 (it
        only warns), and on v2 has only the controllers systemd delegates to the user."""
        if not self.rootless:
            return None
        if self.cgroup_version != "v2":
            return (
                "rootless podman on cgroups v1 ignores memory, CPU and pids limits: run the agent as root, "
                "or rootless on a cgroups v2 host with systemd's controller delegation"
            )
        missing = [name for name in LIMIT_CONTROLLERS if name not in self.cgroup_controllers]
        if missing:
            return (
                f"rootless podman here has no {', '.join(missing)} cgroup controller (not delegated to this "
                "user by systemd: Delegate=cpu memory pids in user@.service), so jobs' limits would be ignored"
            )
        return None


@dataclass(frozen=True)
class PodmanEngine:
    """The ``podman`` program (``binary``), with ``containers_conf`` as CONTAINERS_CONF and
    ``env`` added to its environment. ``timeout_s`` bounds each command but ``pull``."""

    binary: str = "podman"
    containers_conf: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = _DEFAULT_TIMEOUT_S

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.containers_conf is not None:
            environment["CONTAINERS_CONF"] = str(self.containers_conf)
        environment.update(self.env)
        # podman runs from / (see _call): a relative CONTAINERS_CONF means the caller's directory.
        if environment.get("CONTAINERS_CONF"):
            environment["CONTAINERS_CONF"] = os.path.abspath(environment["CONTAINERS_CONF"])
        return environment

    def _call(self, args: Sequence[str], *, timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        """Runs podman; the completed process whatever its status (EngineError only when it
        could not be started or did not finish in time)."""
        argv = [self.binary, *args]
        try:
            # From the filesystem root: podman's conmon outlives this call and writes files (an
            # "oom" marker) into the directory it was started in, which must not be the caller's.
            return subprocess.run(
                argv,
                env=self._environment(),
                cwd="/",
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout_s if timeout_s is None else timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else (error.stderr or "")
            raise EngineError(argv, None, f"timed out after {error.timeout:g} s. {stderr}") from None
        except OSError as error:
            raise EngineError(argv, None, f"could not be started: {error}") from None

    def _check(self, args: Sequence[str], *, timeout_s: float | None = None) -> str:
        """Runs podman and returns its stdout; EngineError unless it exits 0."""
        done = self._call(args, timeout_s=timeout_s)
        if done.returncode != 0:
            raise EngineError([self.binary, *args], done.returncode, done.stderr)
        return done.stdout

    def host(self) -> EngineHost:
        """How podman runs here (``podman info``); EngineError when it cannot say."""
        args = ["info", "--format", "json"]
        try:
            info = json.loads(self._check(args))
            host = info["host"]
            return EngineHost(
                rootless=bool(host["security"]["rootless"]),
                cgroup_version=str(host["cgroupVersion"]),
                cgroup_controllers=tuple(str(name) for name in host.get("cgroupControllers") or ()),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise EngineError([self.binary, *args], 0, f"printed no host description podman gives: {error}") from None

    # ------------------------------------------------------------------ containers

    def _container_id(self, args: Sequence[str]) -> str:
        printed = self._check(args).strip().splitlines()
        if not printed or not re.fullmatch(r"[0-9a-f]{64}", printed[-1]):
            raise EngineError([self.binary, *args[:1]], 0, f"printed no container id: {printed!r}")
        return printed[-1]

    def run(self, config: ContainerConfig) -> str:
        """Creates and starts a container, detached; its id."""
        return self._container_id(run_argv(config))

    def create(self, config: ContainerConfig) -> str:
        """Creates a container (nothing runs yet); its id."""
        return self._container_id(create_argv(config))

    def init(self, container: str) -> None:
        """Prepares a created container to start: the runtime makes its cgroup and its main
        process (the host pid conmon writes to the pidfile), which waits to be started."""
        self._check(["container", "init", container])

    def start(self, container: str) -> None:
        """Starts a created or initialized container."""
        self._check(["start", container])

    def inspect(self, container: str) -> ContainerState | None:
        """The container's state; None when there is no such container."""
        args = ["container", "inspect", "--format", "json", container]
        done = self._call(args)
        if done.returncode != 0:
            if any(marker in done.stderr.lower() for marker in _NO_SUCH_CONTAINER):
                return None
            raise EngineError([self.binary, *args], done.returncode, done.stderr)
        data = json.loads(done.stdout)
        return ContainerState.from_inspect(data[0]) if data else None

    def kill(self, container: str, signal: str = "TERM") -> None:
        """Sends ``signal`` (a name: TERM, KILL) to the container's main process; EngineError
        when it does not run (any more)."""
        self._check(["kill", "--signal", signal, container])

    def remove(self, container: str) -> None:
        """Removes the container, killing it first if it runs; no error when it is gone."""
        self._check(["rm", "--force", "--ignore", "--time", "0", container])

    def list(self, label: str | None = None) -> list[ContainerSummary]:
        """Containers in every state, those with ``label`` (``key`` or ``key=value``) only when given."""
        args = ["ps", "--all", "--no-trunc", "--format", "json"]
        if label is not None:
            args += ["--filter", f"label={label}"]
        listed = json.loads(self._check(args) or "[]") or []
        return [
            ContainerSummary(
                id=str(item["Id"]),
                names=tuple(str(name) for name in item.get("Names") or ()),
                state=str(item.get("State", "")).lower(),
                labels={str(k): str(v) for k, v in (item.get("Labels") or {}).items()},
            )
            for item in listed
        ]

    # ------------------------------------------------------------------ images

    def image_exists(self, image: str) -> bool:
        args = ["image", "exists", image]
        done = self._call(args)
        if done.returncode in (0, 1):
            return done.returncode == 0
        raise EngineError([self.binary, *args], done.returncode, done.stderr)

    def pull(self, image: str, *, timeout_s: float) -> None:
        """Pulls ``image``; ImageUnavailable (image_not_found or image_unavailable, see
        ``classify_pull_error``; a pull past ``timeout_s`` is image_unavailable)."""
        try:
            done = self._call(["pull", "--quiet", image], timeout_s=timeout_s)
        except EngineError as error:
            raise ImageUnavailable(IMAGE_UNAVAILABLE, f"podman pull {image}: {error.stderr.strip()}") from None
        if done.returncode != 0:
            detail = done.stderr.strip()[-_STDERR_TAIL:] or f"podman pull exited {done.returncode}"
            raise ImageUnavailable(classify_pull_error(done.stderr), detail)

    def _image_field(self, image: str, template: str) -> str:
        return self._check(["image", "inspect", "--format", template, image]).strip()

    def image_size(self, image: str) -> int:
        """The image's size as stored: its layers unpacked (podman's ``Size``), in bytes."""
        return int(self._image_field(image, "{{.Size}}"))

    def image_digest(self, image: str) -> str:
        """The image's manifest digest as stored (``sha256:<hex>``)."""
        return self._image_field(image, "{{.Digest}}")

    def import_rootfs(self, tarball: Path, image: str, changes: Sequence[str] = (), *, timeout_s: float) -> None:
        """Makes ``image`` from a root filesystem tarball (``podman import``), with Dockerfile
        ``changes`` such as ``ENV PATH=...``."""
        args = ["import", *(f"--change={change}" for change in changes), str(tarball), image]
        self._check(args, timeout_s=timeout_s)

    def remove_image(self, image: str) -> None:
        """Removes the image (not when a container uses it: EngineError then)."""
        self._check(["image", "rm", image])
