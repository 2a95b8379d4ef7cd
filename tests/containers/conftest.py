"""Fixtures of the container tests: the engine, a per-test owner label whose containers are
removed at the end, and a registry on loopback (Debian's docker-registry) serving a tiny image.

Everything is real: podman with the project's containers.conf, a registry process on an
ephemeral 127.0.0.1 port, an image made with ``podman import`` from a one-file tar.
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpumarket.containers.engine import PodmanEngine

DOCKER_REGISTRY = "/usr/bin/docker-registry"


@pytest.fixture(scope="session")
def engine(podman_env) -> PodmanEngine:
    return PodmanEngine(containers_conf=Path(podman_env["CONTAINERS_CONF"]))


@pytest.fixture
def owner(engine) -> Iterator[str]:
    """A label value no other test uses; its containers are removed when the test ends."""
    value = f"test-{uuid.uuid4().hex[:12]}"
    yield value
    for container in engine.list(f"gpumarket.owner={value}"):
        engine.remove(container.id)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serving(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/v2/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@dataclass(frozen=True)
class Registry:
    address: str  # 127.0.0.1:<port>
    engine: PodmanEngine  # podman with a registries.conf that lets it speak plain HTTP to it


@pytest.fixture(scope="session")
def registry(engine, tmp_path_factory) -> Iterator[Registry]:
    """docker-registry (distribution 2.8) on 127.0.0.1, storing in a temporary directory."""
    binary = shutil.which("docker-registry") or (DOCKER_REGISTRY if Path(DOCKER_REGISTRY).exists() else None)
    if binary is None:
        # As podman_env: a failure where `make containers` could install it, a skip where it cannot.
        if os.geteuid() == 0 and shutil.which("apt-get") is not None:
            pytest.fail("docker-registry is not installed but could be: run `make containers`")
        pytest.skip("docker-registry is not installed and cannot be here (needs root and apt-get)")
    where = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = where / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {where / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: error\n"
    )
    registries = where / "registries.conf"
    registries.write_text(f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    with open(where / "registry.log", "wb") as output:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not _serving(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not serve: {(where / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield Registry(
            f"127.0.0.1:{port}",
            PodmanEngine(containers_conf=engine.containers_conf, env={"CONTAINERS_REGISTRIES_CONF": str(registries)}),
        )
    finally:
        process.terminate()
        process.wait(10)


@dataclass(frozen=True)
class TinyImage:
    local: str  # the imported image's local name (a tag)
    pushed: str  # <registry>/<name>@sha256:<hex>, as the registry serves it
    repository: str  # <registry>/<name>


@pytest.fixture(scope="session")
def tiny_image(registry, tmp_path_factory) -> Iterator[TinyImage]:
    """A one-file image (a few kB), pushed to the registry and removed from local storage, so a
    pull has something to fetch."""
    where = tmp_path_factory.mktemp("tiny")
    archive = where / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"a tiny image for the pull tests\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    name = f"gpumarket-tiny-{uuid.uuid4().hex[:8]}"
    local = f"localhost/{name}:test"
    repository = f"{registry.address}/{name}"
    podman = [registry.engine.binary]
    env = registry.engine._environment()
    subprocess.run([*podman, "import", str(archive), local], env=env, check=True, capture_output=True, timeout=60)
    digest_file = where / "digest"
    subprocess.run(
        [*podman, "push", "--tls-verify=false", "--digestfile", str(digest_file), local, f"{repository}:test"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run([*podman, "image", "rm", local], env=env, check=True, capture_output=True, timeout=60)
    image = TinyImage(local, f"{repository}@{digest_file.read_text().strip()}", repository)
    try:
        yield image
    finally:
        subprocess.run(
            [*podman, "image", "rm", "--force", image.pushed], env=env, capture_output=True, timeout=60, check=False
        )  # the tests may have removed it
