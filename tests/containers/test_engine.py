"""gpumarket.containers.engine: the podman command line, with real containers, images and a
registry on loopback (and the pure parts: argv, timestamps, pull error classes)."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import time
from pathlib import Path

import pytest

from gpumarket.agentapi.spec import ContainerJobSpec, ContainerLimits
from gpumarket.containers.engine import (
    ContainerConfig,
    EngineError,
    EngineHost,
    ImageUnavailable,
    PodmanEngine,
    classify_pull_error,
    parse_timestamp_ns,
    run_argv,
)
from gpumarket.containers.registry import RegistryClient
from gpumarket.provider.container_runner import ContainerRunner, ContainerSettings
from gpumarket.provider.jobdir import RunnerConfig
from helpers.waiting import eventually

MISSING = "sha256:" + "0" * 64


# --------------------------------------------------------------------------- pure


def test_run_argv_is_one_argument_per_value_and_never_a_shell_string():
    config = ContainerConfig(
        image="localhost/x@" + MISSING,
        name="n",
        labels={"gpumarket.owner": "o", "gpumarket.job": "7"},
        args=["$HOME", "a b", "`id`", "--privileged"],
        entrypoint=["python3", "-c"],
        env={"A": "1=2", "EMPTY": ""},
        user="65534:65534",
        workdir="/work",
        binds=[(Path("/jobs/job-7/work"), "/work")],
        memory_bytes=64 << 20,
        cpu_millis=1500,
        pids_limit=32,
        shm_bytes=1 << 20,
        devices=["nvidia.com/gpu=1"],
        init_path="/usr/bin/catatonit",
        log_path=Path("/jobs/job-7/container.log"),
    )
    argv = run_argv(config)
    after = argv.index("--")
    # The job's arguments follow the image, after the end of podman's options: none is read as one.
    assert argv[after + 1 :] == ["localhost/x@" + MISSING, "$HOME", "a b", "`id`", "--privileged"]
    options = argv[:after]
    pairs = list(itertools.pairwise(options))
    for expected in [
        ("--network", "none"),
        ("--user", "65534:65534"),
        ("--workdir", "/work"),
        ("--cap-drop", "all"),
        ("--security-opt", "no-new-privileges"),
        ("--memory", str(64 << 20)),
        ("--memory-swap", str(64 << 20)),
        ("--cpus", "1.500"),
        ("--pids-limit", "32"),
        ("--shm-size", str(1 << 20)),
        ("--pull", "never"),
        ("--device", "nvidia.com/gpu=1"),
        ("--volume", "/jobs/job-7/work:/work:rw"),
        ("--env", "A=1=2"),
        ("--env", "EMPTY="),
        ("--entrypoint", json.dumps(["python3", "-c"])),
        ("--log-opt", "path=/jobs/job-7/container.log"),
        ("--init-path", "/usr/bin/catatonit"),
    ]:
        assert expected in pairs, expected
    assert {"--read-only", "--read-only-tmpfs=false", "--http-proxy=false", "--init", "--detach"} <= set(options)
    with pytest.raises(ValueError, match="':' or ','"):
        run_argv(ContainerConfig(image="i", name="n", binds=[(Path("/a:b"), "/work")]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T12:07:23.962010342Z", 1796299643_962010342),
        ("2026-12-03T12:07:23.9Z", 1796299643_900000000),
        ("2026-12-03T12:07:23Z", 1796299643_000000000),
        ("2026-12-03T13:07:23.000000001+01:00", 1796299643_000000001),
        ("2026-12-03 12:07:23.5 +0000 UTC", 1796299643_500000000),
        ("0001-01-01T00:00:00Z", None),
        ("not a time", None),
    ],
)
def test_timestamps_are_parsed_to_the_nanosecond(text, expected):
    assert parse_timestamp_ns(text) == expected


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        (
            (
                "Error: initializing source docker://r/x@sha256:0: reading manifest sha256:0 in r/x: manifest unknown: "
                "manifest unknown"
            ),
            "image_not_found",
        ),
        (
            "Error: reading manifest sha256:0 in r/x: name unknown: repository name not known to registry",
            "image_not_found",
        ),
        (
            "Error: initializing source docker://r/x: reading manifest in r/x: StatusCode: 404, not found",
            "image_not_found",
        ),
        (
            (
                'time="..." level=warning msg="Failed, retrying in 1s ... (1/3). Error: ... manifest unknown"\n'
                'Error: pinging container registry r: Get "https://r/v2/": dial tcp: connect: connection refused'
            ),
            "image_unavailable",
        ),
        (
            (
                'Error: pinging container registry r: Get "https://r/v2/": dial tcp 127.0.0.1:443: connect: connection '
                "refused"
            ),
            "image_unavailable",
        ),
        ("Error: reading manifest sha256:0 in r/x: unauthorized: authentication required", "image_unavailable"),
        (
            (
                'Error: short-name "x@sha256:0" did not resolve to an alias and no unqualified-search registries are '
                "defined"
            ),
            "image_unavailable",
        ),
    ],
)
def test_pull_errors_are_classified(stderr, code):
    assert classify_pull_error(stderr) == code


def test_image_unavailable_codes_are_the_designs():
    error = ImageUnavailable("image_too_large", "12 bytes, more than 10")
    assert (error.code, error.detail) == ("image_too_large", "12 bytes, more than 10")
    with pytest.raises(ValueError, match="unknown code"):
        ImageUnavailable("gone", "?")


def test_engine_error_says_which_command_its_status_and_stderr(engine):
    with pytest.raises(EngineError) as raised:
        engine.image_size("localhost/gpumarket-nonesuch@" + MISSING)
    error = raised.value
    assert error.command[:3] == (engine.binary, "image", "inspect") and error.returncode not in (0, None)
    assert "gpumarket-nonesuch" in error.stderr and "exited" in str(error)
    assert isinstance(error, OSError)
    assert pickle.loads(pickle.dumps(error)).command == error.command
    missing = PodmanEngine(binary="/nonexistent/podman")
    with pytest.raises(EngineError, match="could not be started"):
        missing.list()


# --------------------------------------------------------------------------- containers


def test_a_container_is_run_inspected_killed_listed_and_removed(engine, python_image, owner):
    config = ContainerConfig(
        image=python_image,
        name=f"gpumarket-{owner}-engine",
        labels={"gpumarket.owner": owner, "gpumarket.job": "1"},
        entrypoint=["python3", "-c"],
        args=["import time; print('up', flush=True); time.sleep(60)"],
        init_path="/usr/bin/catatonit",
    )
    container_id = engine.run(config)
    state = engine.inspect(container_id)
    assert state is not None and state.id == container_id and state.name == config.name
    assert state.running and state.pid > 0 and state.started_at_ns is not None and state.finished_at_ns is None
    assert state.labels == {"gpumarket.owner": owner, "gpumarket.job": "1"}
    assert Path(f"/proc/{state.pid}").exists()  # a host pid
    assert abs(state.started_at_ns / 1e9 - time.time()) < 60
    listed = engine.list(f"gpumarket.owner={owner}")
    assert [(c.id, c.names, c.state) for c in listed] == [(container_id, (config.name,), "running")]
    assert engine.list(f"gpumarket.owner={owner}-other") == []
    engine.kill(container_id, "TERM")
    assert eventually(lambda: engine.inspect(container_id).exited, 10.0)
    ended = engine.inspect(container_id)
    assert ended.exit_code == 128 + 15 and not ended.running and ended.pid == 0
    assert ended.finished_at_ns is not None and ended.finished_at_ns >= ended.started_at_ns
    with pytest.raises(EngineError):
        engine.kill(container_id, "TERM")  # it does not run any more
    engine.remove(container_id)
    engine.remove(container_id)  # gone already: no error
    assert engine.inspect(container_id) is None
    assert engine.list(f"gpumarket.owner={owner}") == []


def test_local_images_are_found_sized_and_digested(engine, python_image):
    assert engine.image_exists(python_image)
    assert not engine.image_exists(python_image.rsplit("@", 1)[0] + "@" + MISSING)
    assert engine.image_digest(python_image) == python_image.rsplit("@", 1)[1]
    assert 10 << 20 < engine.image_size(python_image) < 2 << 30


# --------------------------------------------------------------------------- pulling


def test_an_image_is_pulled_by_digest_from_a_registry(registry, tiny_image):
    engine = registry.engine
    assert not engine.image_exists(tiny_image.pushed)
    engine.pull(tiny_image.pushed, timeout_s=60)
    assert engine.image_exists(tiny_image.pushed)
    assert 0 < engine.image_size(tiny_image.pushed) < 1 << 20
    engine.remove_image(tiny_image.pushed)
    assert not engine.image_exists(tiny_image.pushed)


def test_a_digest_the_registry_does_not_have_is_image_not_found(registry, tiny_image):
    for reference in (f"{tiny_image.repository}@{MISSING}", f"{registry.address}/gpumarket-nonesuch@{MISSING}"):
        with pytest.raises(ImageUnavailable) as raised:
            registry.engine.pull(reference, timeout_s=60)
        assert raised.value.code == "image_not_found", raised.value.detail
        assert "manifest unknown" in raised.value.detail


def test_an_unreachable_registry_is_image_unavailable(engine):
    # Nothing listens on port 9 of loopback: podman retries three times, then gives up.
    with pytest.raises(ImageUnavailable) as raised:
        engine.pull(f"127.0.0.1:9/gpumarket-nonesuch@{MISSING}", timeout_s=60)
    assert raised.value.code == "image_unavailable" and "connection refused" in raised.value.detail


@pytest.mark.parametrize(
    ("host", "words"),
    [
        (EngineHost(rootless=False, cgroup_version="v1", cgroup_controllers=()), None),
        (EngineHost(rootless=False, cgroup_version="v2", cgroup_controllers=("memory",)), None),
        (
            EngineHost(rootless=True, cgroup_version="v1", cgroup_controllers=("cpu", "memory", "pids")),
            "rootless podman on cgroups v1 ignores memory, CPU and pids limits",
        ),
        (EngineHost(rootless=True, cgroup_version="v2", cgroup_controllers=("cpu", "io", "memory", "pids")), None),
        (
            EngineHost(rootless=True, cgroup_version="v2", cgroup_controllers=("memory",)),
            "rootless podman here has no cpu, pids cgroup controller",
        ),
    ],
)
def test_limits_refusal_says_when_a_host_would_ignore_jobs_limits(host, words):
    refusal = host.limits_refusal()
    assert refusal is None if words is None else words in refusal


def test_host_describes_this_podman(engine):
    host = engine.host()
    assert host.cgroup_version in ("v1", "v2") and "memory" in host.cgroup_controllers
    assert host.rootless == (os.geteuid() != 0)
    if not host.rootless:
        assert host.limits_refusal() is None  # as root podman enforces the limits the tests check


def test_a_pull_past_its_timeout_is_image_unavailable(engine):
    with pytest.raises(ImageUnavailable) as raised:
        engine.pull(f"127.0.0.1:9/gpumarket-nonesuch@{MISSING}", timeout_s=0.5)
    assert raised.value.code == "image_unavailable" and "timed out" in raised.value.detail


def _spec(image: str) -> ContainerJobSpec:
    return ContainerJobSpec(
        image=image,
        command=["true"],
        gpu_count=0,
        limits=ContainerLimits(max_seconds=5, max_output_bytes=1000, max_memory_bytes=64 << 20),
    )


def _sizing_runner(registry, root: Path, max_image_bytes: int, *, sized: bool = True) -> ContainerRunner:
    """A container runner pulling from the loopback registry; ``sized``: it is told the registry's
    plain-HTTP address, as a provider names one with --registry (else it asks https://, and cannot)."""
    registries = {registry.address: f"http://{registry.address}"} if sized else {}
    settings = ContainerSettings(
        engine=registry.engine, owner="test-prepare", max_image_bytes=max_image_bytes, registries=registries
    )
    return ContainerRunner(RunnerConfig(root=root, meter_gpus=False), settings)


def test_prepare_refuses_an_image_its_manifest_declares_too_large_without_pulling_it(registry, tiny_image, tmp_path):
    spec = _spec(tiny_image.pushed)
    declared = RegistryClient({registry.address: f"http://{registry.address}"}).check(spec.image_reference)
    assert declared.found and declared.size_bytes is not None  # the oracles' measure of it
    with pytest.raises(ImageUnavailable) as raised:
        _sizing_runner(registry, tmp_path / "jobs", declared.size_bytes - 1).prepare(1, spec)
    assert raised.value.code == "image_too_large"
    assert f"is {declared.size_bytes} bytes as its registry's manifest declares it" in raised.value.detail
    assert f"max_image_bytes {declared.size_bytes - 1}" in raised.value.detail
    assert not registry.engine.image_exists(tiny_image.pushed)  # refused before a byte was pulled
    _sizing_runner(registry, tmp_path / "jobs", declared.size_bytes).prepare(2, spec)  # at the limit: within it
    assert registry.engine.image_exists(tiny_image.pushed)
    assert not (tmp_path / "jobs" / "job-2").exists()  # nothing recorded before the job starts
    with pytest.raises(ImageUnavailable) as raised:
        _sizing_runner(registry, tmp_path / "jobs", 1 << 20).prepare(3, _spec(f"{tiny_image.repository}@{MISSING}"))
    assert raised.value.code == "image_not_found"
    registry.engine.remove_image(tiny_image.pushed)


def test_prepare_pulls_an_image_it_cannot_size_without_the_limit(registry, tiny_image, tmp_path):
    # Not told where the registry is, the agent asks https://<host>, which this plain-HTTP
    # registry does not serve; podman (its registries.conf says insecure) still pulls. A refusal
    # the oracles could not confirm would be no refusal: the image is pulled, limit or not.
    _sizing_runner(registry, tmp_path / "jobs", 1, sized=False).prepare(1, _spec(tiny_image.pushed))
    assert registry.engine.image_exists(tiny_image.pushed)
    registry.engine.remove_image(tiny_image.pushed)
