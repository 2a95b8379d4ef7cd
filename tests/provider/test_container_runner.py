"""gpumarket.provider.container_runner: real jobs in real Podman containers: results and hashes,
isolation (network, files, read-only root, user, capabilities), limits (memory, pids, output,
time), escapes, restarts (adopt, finalize), sweeping and images.

Each test gets its own job root (tmp_path) and owner label, so container names never collide and
the fixture removes whatever a test left running. Jobs are short; assertions are about behaviour,
with generous bounds on time (the machine has 2 cores and may be loaded).
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from gpumarket.agentapi.result import FileStatus, ResultBundle
from gpumarket.agentapi.spec import ContainerJobSpec, ContainerLimits, JobSpec, Limits
from gpumarket.containers.engine import ImageUnavailable, PodmanEngine, run_argv
from gpumarket.measure.metering import UsageRecord
from gpumarket.provider.container_runner import (
    ContainerRunner,
    ContainerSettings,
    container_id_file,
)
from gpumarket.provider.jobdir import ProcessGone, RunnerConfig
from helpers.waiting import eventually

MiB = 1 << 20


@pytest.fixture(scope="module")
def engine(podman_env) -> PodmanEngine:
    return PodmanEngine(containers_conf=Path(podman_env["CONTAINERS_CONF"]))


def _owner(engine: PodmanEngine) -> Iterator[str]:
    value = f"test-{uuid.uuid4().hex[:12]}"
    yield value
    for container in engine.list(f"gpumarket.owner={value}"):
        engine.remove(container.id)


@pytest.fixture
def owner(engine) -> Iterator[str]:
    yield from _owner(engine)


@pytest.fixture
def other_owner(engine) -> Iterator[str]:
    yield from _owner(engine)


@pytest.fixture
def make_runner(tmp_path, engine, owner) -> Callable[..., ContainerRunner]:
    """A runner on this test's job root and owner (a second one is an agent after a restart)."""

    def make(*, root: Path | None = None, **settings: Any) -> ContainerRunner:
        config = RunnerConfig(root=root or tmp_path / "jobs", meter_interval_s=0.1, meter_gpus=False, kill_grace_s=0.5)
        return ContainerRunner(config, ContainerSettings(engine=engine, owner=settings.pop("owner", owner), **settings))

    return make


@pytest.fixture
def runner(make_runner) -> ContainerRunner:
    return make_runner()


@pytest.fixture
def python_spec(python_image) -> Callable[..., ContainerJobSpec]:
    """A spec that runs ``code`` with the image's python3."""

    def make(
        code: str,
        *,
        max_seconds: int = 30,
        max_output_bytes: int = MiB,
        max_memory_bytes: int = 128 * MiB,
        **fields: Any,
    ) -> ContainerJobSpec:
        limits = ContainerLimits(
            max_seconds=max_seconds,
            max_output_bytes=max_output_bytes,
            max_memory_bytes=max_memory_bytes,
            **{key: fields.pop(key) for key in ("cpu_millis", "max_pids", "shm_bytes") if key in fields},
        )
        return ContainerJobSpec(
            image=python_image, command=["python3", "-c", code], gpu_count=0, limits=limits, **fields
        )

    return make


def _report(result) -> dict[str, Any]:
    return json.loads(result.bundle.contents["stdout"])


# --------------------------------------------------------------------------- results


def test_a_job_completes_with_its_outputs_and_hashes_which_concluding_again_keeps(runner, python_spec, engine):
    code = "import sys; open('out.txt', 'w').write('hello'); print('to stdout'); print('to stderr', file=sys.stderr)"
    spec = python_spec(code, outputs=["out.txt", "absent"])
    job = runner.start(1, spec)
    result = job.wait()
    assert (result.exit_code, result.stop_reason, result.resumed) == (0, None, False)
    assert result.bundle.contents == {"stdout": b"to stdout\n", "stderr": b"to stderr\n", "outputs/out.txt": b"hello"}
    manifest = result.bundle.manifest
    assert manifest.job_id == 1 and [entry.status for entry in manifest.files][-1] == FileStatus.MISSING
    assert result.result_hash == keccak(manifest.canonical_bytes())
    assert ResultBundle.parse(result.paths.result.read_bytes()).verify(result.result_hash) == result.result_hash
    usage_bytes = result.paths.usage.read_bytes()
    assert keccak(usage_bytes) == result.evidence_hash == result.usage.evidence_hash()
    record = UsageRecord.from_json(usage_bytes)
    assert record.job_id == 1 and record.complete and record.pid == job.pid and record.summary.samples >= 1
    assert record.summary.max_rss_bytes > 0  # the container's memory peak, from its cgroup
    assert result.output_paths["outputs/out.txt"].read_bytes() == b"hello"
    # What the job directory keeps of the container, and the container removed once it is recorded.
    assert container_id_file(result.paths).read_text().strip() == job.container_id
    assert result.paths.exit_status.read_text().strip() == "0" and result.paths.pidfile.exists()
    assert engine.inspect(job.container_id) is None
    assert result.started_at <= result.finished_at <= time.time()
    # Concluding again (an agent that restarts after recording it) gives the same hashes.
    again = runner.finalize(1, spec, job.pid, job.start_ticks, job.started_at)
    assert (again.result_hash, again.evidence_hash, again.exit_code) == (result.result_hash, result.evidence_hash, 0)
    assert again.bundle.contents == result.bundle.contents
    with pytest.raises(FileExistsError):
        runner.start(1, spec)  # a job id runs once


def test_the_exit_code_is_kept(runner, python_spec):
    assert runner.run(2, python_spec("import sys; print('bye'); sys.exit(3)")).exit_code == 3


def test_the_environment_is_the_spec_and_the_images_never_the_agents(runner, python_image, monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_CANARY", "must-not-leak")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    # No command: the args replace the image's CMD (this image has none) and run as given.
    spec = ContainerJobSpec(
        image=python_image,
        args=["python3", "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        env={"ONLY": "this", "WITH_SPACES": "a b  c", "EMPTY": ""},
        gpu_count=0,
        limits=ContainerLimits(max_seconds=30, max_output_bytes=MiB, max_memory_bytes=128 * MiB),
    )
    env = _report(runner.run(3, spec))
    assert {key: env[key] for key in ("ONLY", "WITH_SPACES", "EMPTY")} == spec.env
    assert "AGENT_SECRET_CANARY" not in env and not [key for key in env if "proxy" in key.lower()]
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"  # the image's


def test_the_container_is_configured_from_the_spec_and_its_gpus(runner, python_spec, tmp_path):
    spec = python_spec("pass", cpu_millis=1500, max_pids=64, shm_bytes=2 * MiB, network="none")
    argv = run_argv(runner._container_config(9, spec, (1, 3), runner.paths(9)))
    pairs = set(itertools.pairwise(argv))
    assert {
        ("--device", "nvidia.com/gpu=1"),
        ("--device", "nvidia.com/gpu=3"),
        ("--cpus", "1.500"),
        ("--pids-limit", "64"),
        ("--shm-size", str(2 * MiB)),
        ("--memory", str(128 * MiB)),
        ("--memory-swap", str(128 * MiB)),
        ("--user", "65534:65534"),
        ("--network", "none"),
        ("--name", runner.container_name(9)),
    } <= pairs
    assert ("--volume", f"{runner.paths(9).work}:/work:rw") in pairs
    assert len([arg for arg in argv if arg == "--volume"]) == 1  # /work is the only mount


# --------------------------------------------------------------------------- isolation


def test_the_network_is_none(runner, python_spec):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    code = (
        "import json, os, socket\n"
        "seen = {'interfaces': sorted(os.listdir('/sys/class/net'))}\n"
        f"for host in ('127.0.0.1', '192.0.2.1'):\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=3).close()\n"
        "        seen[host] = 'connected'\n"
        "    except OSError as error:\n"
        "        seen[host] = [type(error).__name__, error.errno]\n"
        "print(json.dumps(seen))\n"
    )
    try:
        seen = _report(runner.run(4, python_spec(code)))
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the host's listener
    finally:
        server.close()
    assert seen["interfaces"] == ["lo"]
    assert seen["127.0.0.1"] == ["ConnectionRefusedError", errno.ECONNREFUSED]  # its own loopback, not the host's
    assert seen["192.0.2.1"][1] == errno.ENETUNREACH


def test_the_agents_files_are_not_visible(runner, python_spec, tmp_path):
    keystore = tmp_path / "keystore.json"
    secret = secrets.token_hex(16)
    keystore.write_text(json.dumps({"secret": secret}))
    code = (
        "import json, os\n"
        "seen = {}\n"
        f"for path in ({str(keystore)!r}, '/work/../keystore.json', '/keystore.json', {str(runner.config.root)!r}):\n"
        "    try:\n"
        "        seen[path] = open(path).read() if not os.path.isdir(path) else os.listdir(path)\n"
        "    except OSError as error:\n"
        "        seen[path] = type(error).__name__\n"
        "seen['/'] = sorted(os.listdir('/'))\n"
        "print(json.dumps(seen))\n"
    )
    result = runner.run(5, python_spec(code))
    seen = _report(result)
    assert secret not in result.bundle.contents["stdout"].decode()
    assert seen[str(keystore)] == seen["/work/../keystore.json"] == seen["/keystore.json"] == "FileNotFoundError"
    assert seen[str(runner.config.root)] == "FileNotFoundError"
    assert "keystore.json" not in seen["/"]


def test_the_root_is_read_only_the_user_is_not_root_and_has_no_capabilities(runner, python_spec):
    code = (
        "import json, os\n"
        "seen = {}\n"
        "for path in ('/etc/x', '/tmp/x', '/x', '/usr/bin/python3', '/work/x'):\n"
        "    try:\n"
        "        open(path, 'a').write('x')\n"
        "        seen[path] = 'written'\n"
        "    except OSError as error:\n"
        "        seen[path] = error.errno\n"
        "import tempfile\n"
        "seen['tempdir'] = tempfile.gettempdir()\n"  # Python needs no /tmp: it falls back to /work
        "with tempfile.TemporaryFile() as scratch:\n"
        "    scratch.write(b'scratch')\n"
        "seen['uid'], seen['gid'] = os.getuid(), os.getgid()\n"
        "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in line)\n"
        "for key in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs'):\n"
        "    seen[key] = status[key].strip()\n"
        "print(json.dumps(seen))\n"
    )
    result = runner.run(6, python_spec(code))
    seen = _report(result)
    assert seen["/etc/x"] == seen["/tmp/x"] == seen["/x"] == errno.EROFS  # no tmpfs at /tmp either
    assert seen["/usr/bin/python3"] in (errno.EROFS, errno.EACCES)
    assert seen["/work/x"] == "written" and (result.paths.work / "x").read_text() == "x"
    assert seen["tempdir"] == "/work"
    assert seen["uid"] == seen["gid"] == 65534  # not root
    assert (result.paths.work / "x").stat().st_uid == 65534
    assert {seen[key] for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}
    assert seen["NoNewPrivs"] == "1"


# --------------------------------------------------------------------------- limits


def test_a_memory_bomb_is_killed_at_the_limit_and_its_peak_metered(runner, python_spec):
    limit = 64 * MiB
    code = (
        "chunks = []\n"
        "for i in range(64):\n"
        "    chunks.append(bytearray(8 << 20))\n"  # 8 MiB at a time, each touched
        "    print(i, flush=True)\n"
    )
    result = runner.run(7, python_spec(code, max_memory_bytes=limit))
    assert result.exit_code == 137 and result.stop_reason is None  # the kernel's OOM kill, SIGKILL
    allocated = len(result.bundle.contents["stdout"].splitlines())
    assert 2 <= allocated < 8  # it got some, never the 512 MiB it asked for
    peak = result.usage.summary.max_rss_bytes
    assert limit // 2 < peak <= limit + MiB


def test_a_fork_bomb_is_bounded_by_max_pids(runner, python_spec):
    code = (
        "import os, time\n"
        "forked = failed = 0\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        failed += 1\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    forked += 1\n"
        "print(forked, failed, flush=True)\n"
    )
    started = time.monotonic()
    result = runner.run(8, python_spec(code, max_pids=16))
    forked, failed = map(int, result.bundle.contents["stdout"].split())
    assert forked < 16 and failed > 0 and forked + failed == 100
    # Its children ended with it (they sleep 60 s): the container's PID namespace went with its init.
    assert result.exit_code == 0 and time.monotonic() - started < 30


def test_an_output_flood_is_stopped_and_cut(runner, python_spec):
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    result = runner.run(10, python_spec(flood, max_output_bytes=100_000))
    assert result.stop_reason == "output_limit" and result.output_limit_exceeded and result.exit_code is None
    assert result.paths.stdout.stat().st_size == 100_000
    stdout = next(entry for entry in result.bundle.manifest.files if entry.name == "stdout")
    assert (stdout.status, stdout.size) == (FileStatus.TRUNCATED, 100_000)
    assert result.bundle.verify() == result.result_hash


def _sleeping(seconds: str) -> list[int]:
    """The host's processes running ``sleep <seconds>``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_setsid_child_does_not_outlive_the_job(runner, python_spec):
    marker = f"300.{secrets.randbelow(10**9):09d}"  # sleep 300.xxx: a command line no one else has
    code = (
        "import os, subprocess, time\n"
        f"subprocess.Popen(['setsid', 'sleep', {marker!r}], start_new_session=True)\n"
        "time.sleep(0.3)\n"
        "mine = [p for p in os.listdir('/proc') if p.isdigit()\n"
        f"        and open(f'/proc/{{p}}/cmdline', 'rb').read().split(b'\\0')[:2] == [b'sleep', {marker.encode()!r}]]\n"
        "print(len(mine), flush=True)\n"
    )
    result = runner.run(11, python_spec(code))
    assert result.exit_code == 0 and result.bundle.contents["stdout"] == b"1\n"  # it ran, escaped its session
    assert eventually(lambda: not _sleeping(marker), 10), "the setsid child outlived its container"


def test_a_job_past_its_time_is_stopped_and_metered_to_the_limit(runner, python_spec):
    result = runner.run(12, python_spec("import time; time.sleep(60)", max_seconds=60), max_seconds=1)
    assert result.stop_reason == "timeout" and result.timed_out and result.exit_code is None
    assert result.bundle.manifest.timed_out
    assert float(result.paths.max_seconds.read_text()) == 1.0
    ended = result.usage.samples[-1].t_ns / 1e9  # from the job's start (the journal's)
    assert 1.0 <= ended < 1.0 + runner.config.kill_grace_s + 5


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(runner, python_spec):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    started = time.monotonic()
    result = runner.run(13, python_spec(code, max_seconds=1))
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 1.0 + runner.config.kill_grace_s + 10


def test_an_explicit_stop_is_reported(runner, python_spec):
    job = runner.start(14, python_spec("import time; time.sleep(60)"))
    time.sleep(0.3)
    job.stop()
    result = job.wait()
    assert result.stop_reason == "stopped" and result.exit_code is None and not result.timed_out
    assert result.paths.stop_reason.read_text() == "stopped"


# --------------------------------------------------------------------------- restarts


def test_a_restarted_agent_adopts_the_running_container(runner, make_runner, python_spec, engine):
    spec = python_spec("import time; time.sleep(1.5); print('done')")
    first = runner.start(20, spec)
    assert runner.find_started(20) == (first.pid, first.start_ticks)
    assert runner.is_alive(20, first.pid, first.start_ticks)
    assert not runner.is_alive(20, first.pid, first.start_ticks + 1)  # another process with that pid
    assert not runner.is_alive(21, first.pid, first.start_ticks)  # not that job's container
    pid, started_at = runner.recorded_start(20)
    assert pid == first.pid and abs(started_at - first.started_at) < 0.01
    assert not runner.has_ended(20)
    # The first agent is gone without waiting; another on the same root and owner follows the job.
    second = make_runner()
    adopted = second.adopt(20, spec, (), first.pid, first.start_ticks, first.started_at)
    assert adopted.resumed and adopted.container_id == first.container_id
    result = adopted.wait()
    assert result.exit_code == 0 and result.resumed and result.bundle.contents["stdout"] == b"done\n"
    assert result.usage.complete and result.usage.samples[-1].t_ns >= 1.4e9  # metered from the job's start
    assert second.has_ended(20) and engine.inspect(first.container_id) is None
    with pytest.raises(ProcessGone):
        second.adopt(20, spec, (), first.pid, first.start_ticks, first.started_at)


def test_an_adopted_job_carries_out_the_stop_its_first_agent_began(runner, make_runner, python_spec):
    spec = python_spec("import time; time.sleep(60)")
    first = runner.start(22, spec)
    first.paths.stop_reason.write_text("timeout")  # the first agent wrote it, then died before signalling
    result = make_runner().adopt(22, spec, (), first.pid, first.start_ticks, first.started_at).wait()
    assert result.stop_reason == "timeout" and result.exit_code is None


def test_a_container_that_ended_unfollowed_is_finalized(runner, make_runner, python_spec, engine):
    spec = python_spec("import sys; print('quick'); sys.exit(4)")
    job = runner.start(23, spec)
    assert eventually(lambda: runner.has_ended(23), 20.0)
    assert not runner.is_alive(23, job.pid, job.start_ticks) and runner.find_started(23) is None
    finished_ns = engine.inspect(job.container_id).finished_at_ns
    later = make_runner()
    result = later.finalize(23, spec, job.pid, job.start_ticks, job.started_at)
    assert result.exit_code == 4 and result.resumed and result.bundle.contents["stdout"] == b"quick\n"
    assert result.finished_at == finished_ns / 1e9 and result.usage.complete
    assert result.paths.exit_status.stat().st_mtime_ns == finished_ns
    assert engine.inspect(job.container_id) is None
    again = later.finalize(23, spec, job.pid, job.start_ticks, job.started_at)
    assert (again.result_hash, again.evidence_hash, again.finished_at) == (
        result.result_hash,
        result.evidence_hash,
        result.finished_at,
    )


def test_a_container_gone_without_an_exit_status_cannot_be_finalized(runner, python_spec, engine):
    spec = python_spec("import time; time.sleep(60)")
    job = runner.start(24, spec)
    engine.remove(job.container_id)  # someone removed it behind the agent's back
    assert not runner.has_ended(24) and not runner.is_alive(24, job.pid, job.start_ticks)
    with pytest.raises(ProcessGone, match="gone and left no exit status"):
        runner.finalize(24, spec, job.pid, job.start_ticks, job.started_at)


def test_sweep_removes_this_agents_containers_of_jobs_not_kept(
    runner, make_runner, python_spec, other_owner, tmp_path, engine
):
    spec = python_spec("import time; time.sleep(60)")
    mine = {job_id: runner.start(job_id, spec) for job_id in (30, 31)}
    others = make_runner(root=tmp_path / "other-agent", owner=other_owner)
    theirs = others.start(30, spec)
    assert runner.sweep({31}) == [30]
    assert engine.inspect(mine[30].container_id) is None
    assert engine.inspect(mine[31].container_id).running
    assert engine.inspect(theirs.container_id).running  # another agent's job 30: not touched
    assert runner.sweep({31}) == []
    assert runner.sweep(set()) == [31]
    assert others.sweep(set()) == [30]


def test_discard_removes_the_container_and_the_directory(runner, python_spec, engine):
    job = runner.start(32, python_spec("import time; time.sleep(60)"))
    runner.discard(32)
    assert engine.inspect(job.container_id) is None and not runner.paths(32).root.exists()
    runner.discard(33)  # nothing there: nothing to do


# --------------------------------------------------------------------------- images and refusals


def test_prepare_finds_a_local_image_and_records_nothing(runner, python_spec):
    runner.prepare(40, python_spec("pass"))
    assert not runner.paths(40).root.exists()


def test_prepare_of_an_image_that_is_nowhere_is_image_unavailable(make_runner, python_spec):
    spec = python_spec("pass").model_copy(update={"image": "localhost/gpumarket-nonesuch@sha256:" + "0" * 64})
    with pytest.raises(ImageUnavailable) as raised:
        make_runner(pull_timeout_s=1.0).prepare(41, spec)  # no registry at localhost:443
    assert raised.value.code == "image_unavailable" and "gpumarket-nonesuch" in raised.value.detail


def test_prepare_uses_a_local_image_whatever_its_size(make_runner, python_spec, engine):
    # max_image_bytes limits what the agent pulls; an image the provider keeps is its own choice.
    spec = python_spec("pass")
    make_runner(max_image_bytes=1000).prepare(42, spec)
    assert engine.image_exists(spec.image)


def test_refusals_and_the_offer(make_runner, python_spec):
    runner = make_runner(networks=("research", "none"))
    v1 = JobSpec(command=["true"], limits=Limits(max_seconds=5, max_output_bytes=100))
    assert runner.refusal(v1) == (
        "this provider runs jobs in containers; a version 1 spec (a host process) is not accepted"
    )
    assert runner.refusal(python_spec("pass")) is None
    assert runner.refusal(python_spec("pass", network="research")) is None
    assert runner.refusal(python_spec("pass", network="internet")) == (
        "network 'internet' is not offered by this provider (offered: none, research)"
    )
    assert runner.offer() == {"runtime": "container", "networks": ["none", "research"], "max_image_bytes": 20 * 2**30}
    with pytest.raises(ValueError, match="not offered"):
        runner.start(43, python_spec("pass", network="internet"))
    assert not runner.paths(43).root.exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"user": "0:0"}, "never run as root"),
        ({"user": "nobody"}, "numeric uid:gid"),
        ({"networks": ("host",)}, "never offered"),
        ({"gpu_device_style": "docker"}, "reserved for later"),
        ({"owner": "has space"}, "container owner"),
        ({"max_image_bytes": 0}, "must be positive"),
    ],
)
def test_settings_are_checked(engine, settings, message):
    with pytest.raises(ValueError, match=message):
        ContainerSettings(**{"engine": engine, "owner": "o", **settings})


def test_a_job_root_podman_cannot_mount_is_refused(engine, tmp_path):
    with pytest.raises(ValueError, match="cannot be mounted"):
        ContainerRunner(RunnerConfig(root=tmp_path / "a:b"), ContainerSettings(engine=engine, owner="o"))
    assert not os.path.exists(tmp_path / "a:b")
