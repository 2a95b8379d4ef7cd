"""gpumarket.containers.cgroup: a real container's cgroup on this host (v1 here), and the v2 and
hybrid layouts from hand-made /proc and /sys trees (files, not mocks: the same reads)."""

from __future__ import annotations

import time
from pathlib import Path

from gpumarket.containers.cgroup import CgroupUsage, ContainerCgroup, read_cgroup
from gpumarket.containers.engine import ContainerConfig


def test_a_running_containers_cpu_memory_and_pids_are_read_until_it_is_gone(engine, python_image, owner):
    code = (
        "import os, time\n"
        "data = bytearray(24 << 20)\n"  # 24 MiB, touched
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print('busy done', flush=True)\n"
        "time.sleep(60)\n"
    )
    container = engine.run(
        ContainerConfig(
            image=python_image,
            name=f"gpumarket-{owner}-cgroup",
            labels={"gpumarket.owner": owner},
            entrypoint=["python3", "-c", code],
            memory_bytes=128 << 20,
            pids_limit=16,
            init_path="/usr/bin/catatonit",
        )
    )
    pid = engine.inspect(container).pid
    cgroup = ContainerCgroup.of_pid(pid)
    assert cgroup is not None
    assert container in str(cgroup.cpu) and container in str(cgroup.memory)
    deadline = time.monotonic() + 20
    usage = cgroup.read()
    while usage is not None and usage.cpu_ms < 300:
        assert time.monotonic() < deadline, usage
        time.sleep(0.05)
        usage = cgroup.read()
    assert usage is not None
    assert usage.memory_bytes >= 24 << 20 and usage.memory_peak_bytes is not None
    assert usage.memory_peak_bytes >= usage.memory_bytes and usage.memory_peak_bytes <= 128 << 20
    assert usage.pids is not None and usage.pids >= 2  # catatonit and python
    assert usage.oom_kills in (0, None)
    assert read_cgroup(pid) is not None
    engine.remove(container)
    assert cgroup.read() is None  # the engine removed the cgroup with the container


def test_a_process_that_does_not_exist_has_no_cgroup():
    assert ContainerCgroup.of_pid(2**22 + 1) is None
    assert read_cgroup(2**22 + 1) is None


def _tree(tmp_path: Path, membership: str, mounts: list[str]) -> Path:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "self").mkdir()
    (proc / "42" / "cgroup").write_text(membership)
    (proc / "self" / "mountinfo").write_text("".join(f"{i} 1 0:{i} {line}\n" for i, line in enumerate(mounts, 30)))
    return proc


def test_a_v2_cgroup_is_read(tmp_path):
    sys_cgroup = tmp_path / "sys" / "fs" / "cgroup"
    group = sys_cgroup / "machine.slice" / "libpod-abc.scope" / "container"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n")
    (group / "memory.current").write_text("5000000\n")
    (group / "memory.peak").write_text("9000000\n")
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (group / "pids.current").write_text("3\n")
    proc = _tree(
        tmp_path, "0::/machine.slice/libpod-abc.scope/container\n", [f"/ {sys_cgroup} rw,nosuid - cgroup2 cgroup2 rw"]
    )
    cgroup = ContainerCgroup.of_pid(42, proc=proc)
    assert cgroup is not None and not cgroup.v1_cpu and not cgroup.v1_memory
    assert cgroup.read() == CgroupUsage(
        cpu_ms=1234, memory_bytes=5_000_000, memory_peak_bytes=9_000_000, pids=3, oom_kills=1
    )
    (group / "memory.peak").unlink()  # kernels before 5.19
    assert cgroup.read().memory_peak_bytes is None
    for name in ("cpu.stat", "memory.current", "memory.events", "pids.current"):
        (group / name).unlink()
    group.rmdir()
    assert cgroup.read() is None


def test_a_v2_mount_that_shows_part_of_the_hierarchy_is_followed(tmp_path):
    # An agent in a container of its own sees its cgroup namespace's root as the mount's root.
    sys_cgroup = tmp_path / "cg"
    group = sys_cgroup / "job"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 2000\n")
    (group / "memory.current").write_text("10\n")
    proc = _tree(tmp_path, "0::/outer/job\n", [f"/outer {sys_cgroup} rw - cgroup2 cgroup2 rw"])
    usage = ContainerCgroup.of_pid(42, proc=proc).read()
    assert (usage.cpu_ms, usage.memory_bytes, usage.pids) == (2, 10, None)


def test_a_hybrid_host_reads_the_v1_controllers(tmp_path):
    base = tmp_path / "sys" / "fs" / "cgroup"
    path = "/libpod_parent/libpod-abc"
    for controller in ("cpu,cpuacct", "memory", "pids", "unified"):
        (base / controller / path.lstrip("/")).mkdir(parents=True)
    v1 = {name: base / name / path.lstrip("/") for name in ("cpu,cpuacct", "memory", "pids")}
    (v1["cpu,cpuacct"] / "cpuacct.usage").write_text("2500000000\n")
    (v1["memory"] / "memory.usage_in_bytes").write_text("4096\n")
    (v1["memory"] / "memory.max_usage_in_bytes").write_text("8192\n")
    (v1["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (v1["pids"] / "pids.current").write_text("7\n")
    (base / "unified" / path.lstrip("/") / "cpu.stat").write_text("usage_usec 1\n")  # no controllers here
    membership = f"4:memory:{path}\n3:cpu,cpuacct:{path}\n2:pids:{path}\n1:name=systemd:{path}\n0::{path}\n"
    proc = _tree(
        tmp_path,
        membership,
        [
            f"/ {base / 'cpu,cpuacct'} rw - cgroup cgroup rw,cpu,cpuacct",
            f"/ {base / 'memory'} rw - cgroup cgroup rw,memory",
            f"/ {base / 'pids'} rw - cgroup cgroup rw,pids",
            f"/ {base / 'unified'} rw - cgroup2 cgroup2 rw",
        ],
    )
    cgroup = ContainerCgroup.of_pid(42, proc=proc)
    assert cgroup.v1_cpu and cgroup.v1_memory
    assert cgroup.read() == CgroupUsage(cpu_ms=2500, memory_bytes=4096, memory_peak_bytes=8192, pids=7, oom_kills=2)
