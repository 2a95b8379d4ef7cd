"""gpumarket.provider.runner: real subprocess jobs, their limits, environment, metering and result."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from eth_utils import keccak

from gpumarket.agentapi.result import FileStatus, ResultBundle
from gpumarket.agentapi.spec import ContainerJobSpec, ContainerLimits, JobSpec, Limits
from gpumarket.measure.metering import UsageRecord
from gpumarket.provider.runner import ProcessGone, job_environment, process_start_ticks
from helpers.waiting import eventually

from .support import python_spec


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def files(result) -> dict[str, object]:
    return {entry.name: entry.status for entry in result.bundle.manifest.files}


def test_a_successful_job_leaves_its_outputs_hashes_and_usage(runner):
    code = "import sys; open('out.txt', 'w').write('hello'); print('to stdout'); print('to stderr', file=sys.stderr)"
    result = runner.run(1, python_spec(code, outputs=["out.txt"]))
    assert result.exit_code == 0 and result.stop_reason is None and not result.timed_out
    manifest = result.bundle.manifest
    assert manifest.job_id == 1 and not manifest.output_limit_exceeded
    assert result.bundle.contents == {"stdout": b"to stdout\n", "stderr": b"to stderr\n", "outputs/out.txt": b"hello"}
    assert [entry.name for entry in manifest.files] == ["stdout", "stderr", "outputs/out.txt"]
    assert result.output_paths["outputs/out.txt"].read_bytes() == b"hello"
    # result_hash commits to the manifest, which commits to each file.
    assert result.result_hash == keccak(manifest.canonical_bytes())
    assert result.bundle.verify(result.result_hash) == result.result_hash
    stored = ResultBundle.parse(result.paths.result.read_bytes())
    assert stored.verify(result.result_hash) == result.result_hash
    # The usage record on disk is the one whose hash is the evidence hash.
    usage_bytes = result.paths.usage.read_bytes()
    assert keccak(usage_bytes) == result.evidence_hash == result.usage.evidence_hash()
    record = UsageRecord.from_json(usage_bytes)
    assert record.job_id == 1 and record.complete and record.summary.samples >= 1 and record.gpu_uuids == ()


def test_non_zero_exit_is_reported(runner):
    result = runner.run(2, python_spec("import sys; sys.exit(3)"))
    assert (result.exit_code, result.stop_reason) == (3, None)
    assert runner.run(3, python_spec("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")).exit_code == 128 + 9


def test_a_missing_program_exits_127_and_builtins_are_not_run(runner):
    missing = JobSpec(
        command=["no-such-program-here"],
        env={"PATH": "/usr/bin:/bin"},
        limits=Limits(max_seconds=5, max_output_bytes=1000),
    )
    result = runner.run(4, missing)
    assert result.exit_code == 127 and b"not found" in result.bundle.contents["stderr"]
    # "exit" is a shell builtin; exec looks for a program of that name instead.
    builtin = JobSpec(command=["exit", "3"], limits=Limits(max_seconds=5, max_output_bytes=1000))
    assert runner.run(5, builtin).exit_code == 127


def test_the_program_is_found_on_the_spec_path(runner):
    spec = JobSpec(
        command=["echo", "hi", "there"],
        env={"PATH": "/usr/bin:/bin"},
        limits=Limits(max_seconds=5, max_output_bytes=1000),
    )
    assert runner.run(6, spec).bundle.contents["stdout"] == b"hi there\n"


def test_timeout_kills_the_whole_process_group(runner, tmp_path):
    pids = tmp_path / "pids.json"
    code = (
        "import json, os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(json.dumps([os.getpid(), child.pid]))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    result = runner.run(7, python_spec(code, max_seconds=1))
    elapsed = time.monotonic() - started
    assert result.timed_out and result.stop_reason == "timeout" and result.exit_code is None
    assert result.bundle.manifest.timed_out
    assert 1.0 <= elapsed < 5.0
    for pid in json.loads(pids.read_text()):
        assert eventually(lambda pid=pid: not _pid_alive(pid), 5.0, 0.02), f"process {pid} survived the timeout"


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(runner, tmp_path):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    started = time.monotonic()
    result = runner.run(8, python_spec(code, max_seconds=1))
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 1.0 + runner.config.kill_grace_s + 3.0


def test_background_processes_left_behind_are_killed(runner, tmp_path):
    pid_file = tmp_path / "bg.pid"
    code = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
    )
    result = runner.run(9, python_spec(code))
    assert result.exit_code == 0
    assert eventually(lambda: not _pid_alive(int(pid_file.read_text())), 5.0, 0.02)


def test_output_over_the_limit_stops_the_job_and_is_cut(runner):
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    result = runner.run(10, python_spec(flood, max_output_bytes=100_000))
    assert result.stop_reason == "output_limit" and result.output_limit_exceeded and result.exit_code is None
    assert result.paths.stdout.stat().st_size == 100_000
    stdout = next(entry for entry in result.bundle.manifest.files if entry.name == "stdout")
    assert (stdout.status, stdout.size) == (FileStatus.TRUNCATED, 100_000)
    assert result.bundle.verify() == result.result_hash


def test_outputs_share_the_byte_budget(runner):
    code = (
        "import os\n"
        "print('x' * 99)\n"  # 100 bytes of stdout
        "open('small', 'wb').write(b's' * 300)\n"
        "open('big', 'wb').write(b'b' * 1000)\n"
        "open('last', 'wb').write(b'l' * 500)\n"
        "os.mkdir('adir')\n"
        "os.symlink('/etc/hostname', 'link')\n"
        "os.mkfifo('fifo')\n"
    )
    spec = python_spec(code, max_output_bytes=1000, outputs=["small", "big", "last", "absent", "adir", "link", "fifo"])
    result = runner.run(11, spec)
    assert result.exit_code == 0 and result.stop_reason is None
    assert files(result) == {
        "stdout": FileStatus.COMPLETE,
        "stderr": FileStatus.COMPLETE,
        "outputs/small": FileStatus.COMPLETE,
        "outputs/big": FileStatus.OVER_LIMIT,  # 100 + 300 + 1000 > 1000
        "outputs/last": FileStatus.COMPLETE,  # 100 + 300 + 500 fits
        "outputs/absent": FileStatus.MISSING,
        "outputs/adir": FileStatus.NOT_A_FILE,
        "outputs/link": FileStatus.NOT_A_FILE,
        "outputs/fifo": FileStatus.NOT_A_FILE,
    }
    assert result.output_limit_exceeded
    assert sum(len(raw) for raw in result.bundle.contents.values()) <= 1000
    assert result.bundle.verify() == result.result_hash


def test_the_environment_is_exactly_the_spec_plus_the_gpu_variables(runner, monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_CANARY", "must-not-leak")
    spec = JobSpec(
        command=["/usr/bin/env"],
        env={"ONLY": "this", "PATH": "/usr/bin:/bin"},
        limits=Limits(max_seconds=5, max_output_bytes=10_000),
    )
    result = runner.run(12, spec, gpus=(0, 2))
    env = dict(line.split("=", 1) for line in result.bundle.contents["stdout"].decode().splitlines())
    assert env == {
        "ONLY": "this",
        "PATH": "/usr/bin:/bin",
        "CUDA_VISIBLE_DEVICES": "0,2",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "PWD": str(result.paths.work),
    }


def test_cuda_visible_devices_is_empty_without_gpus(runner):
    result = runner.run(13, python_spec("import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"))
    assert result.bundle.contents["stdout"] == b"''\n"
    assert job_environment(python_spec("1"), (1,))["CUDA_VISIBLE_DEVICES"] == "1"


def test_each_job_gets_a_fresh_working_directory(runner):
    result = runner.run(14, python_spec("import os; print(os.getcwd()); print(sorted(os.listdir('.')))"))
    cwd, listing = result.bundle.contents["stdout"].decode().splitlines()
    assert cwd == str(result.paths.work) and listing == "[]"
    with pytest.raises(FileExistsError):
        runner.start(14, python_spec("print(1)"))


def test_the_memory_limit_applies(runner):
    code = "b = bytearray(512 * 1024 * 1024)\nprint('allocated')\n"
    limited = runner.run(15, python_spec(code, max_memory_bytes=256 * 1024 * 1024))
    assert limited.exit_code == 1 and b"MemoryError" in limited.bundle.contents["stderr"]


def test_usage_counts_the_jobs_cpu_time(runner):
    code = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
    result = runner.run(16, python_spec(code))
    assert result.exit_code == 0
    assert result.usage.summary.cpu_ms >= 300
    assert result.usage.summary.max_rss_bytes > 0


def test_adopting_a_running_job_follows_it_to_the_end(runner):
    spec = python_spec("import time; time.sleep(0.8); print('done')")
    first = runner.start(17, spec)
    assert eventually(lambda: runner.find_started(17) is not None, 5.0, 0.02)  # once the wrapper wrote its pid
    assert runner.find_started(17) == (first.pid, first.start_ticks)
    assert runner.is_alive(17, first.pid, first.start_ticks)
    assert not runner.is_alive(17, first.pid, first.start_ticks + 1)  # another process with that pid
    adopted = runner.adopt(17, spec, (), first.pid, first.start_ticks, first.started_at)
    assert adopted.resumed
    result = adopted.wait()
    first._process.wait()  # our own child still needs reaping
    assert result.exit_code == 0 and result.resumed and result.bundle.contents["stdout"] == b"done\n"
    with pytest.raises(ProcessGone):
        runner.adopt(17, spec, (), first.pid, first.start_ticks, first.started_at)
    assert process_start_ticks(os.getpid()) is not None and process_start_ticks(2**22 + 1) is None


def test_an_explicit_stop_is_reported(runner):
    job = runner.start(18, python_spec("import time; time.sleep(60)"))
    time.sleep(0.2)
    job.stop()
    result = job.wait()
    assert result.stop_reason == "stopped" and result.exit_code is None and not result.timed_out


def test_non_ascii_and_odd_arguments_reach_the_program_unchanged(runner):
    args = ["héllo ✓", "", "$HOME", "`id`", "a b", "-c", "'quoted'", "\\n"]
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    spec = JobSpec(command=[sys.executable, "-c", code, *args], limits=Limits(max_seconds=5, max_output_bytes=10_000))
    assert json.loads(runner.run(19, spec).bundle.contents["stdout"]) == args


def test_a_started_job_is_found_even_without_its_pid_file(runner):
    job = runner.start(20, python_spec("import time; time.sleep(0.5)"))
    assert eventually(lambda: runner.paths(20).pidfile.exists(), 5.0, 0.02)
    runner.paths(20).pidfile.unlink()  # as in the instant before the wrapper writes it
    assert runner.find_started(20) == (job.pid, job.start_ticks)
    assert job.wait().exit_code == 0
    assert runner.find_started(20) is None
    assert runner.find_started(21) is None  # never started: no directory at all


def test_a_container_spec_never_runs_as_a_host_process(runner, tmp_path):
    """The agent asks ``refusal`` first; the runner refuses on its own too, so a version 2 spec's
    command never runs unsandboxed on the host."""
    marker = tmp_path / "ran-on-the-host"
    spec = ContainerJobSpec(
        image="ghcr.io/team/train@sha256:" + "ab" * 32,
        command=[sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
        gpu_count=0,
        limits=ContainerLimits(max_seconds=5, max_output_bytes=4096, max_memory_bytes=1 << 30),
    )
    with pytest.raises(ValueError, match="needs an agent with the container runtime"):
        runner.start(22, spec)
    assert not runner.paths(22).root.exists() and not marker.exists()
    with pytest.raises(TypeError, match="needs an agent with the container runtime"):
        runner.adopt(22, spec, (), 1, 1, 0.0)
    with pytest.raises(TypeError, match="needs an agent with the container runtime"):
        runner.finalize(22, spec, 1, None, 0.0)
