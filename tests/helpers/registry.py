"""Image registries for tests: Debian's real ``docker-registry`` (distribution 2.8) on loopback, and
a tiny scripted registry of our own for what a real one would not do (wrong bytes, token dances).

    with local_registry(tmp_path) as registry:        # 127.0.0.1:<free port>, storage in tmp_path
        digest = registry.push(python_image, "gm/python:t", podman_env)
        reference = registry.reference("gm/python", digest)   # "127.0.0.1:PORT/gm/python@sha256:..."

    with ScriptedRegistry() as fake:                   # answers from fake.routes, over real HTTP
        fake.routes["/v2/x/manifests/sha256:..."] = Route(200, body, {"Content-Type": OCI_MANIFEST})

A test module wraps these in its own fixtures (module scope: one registry and one push per module).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "REGISTRY_BINARY",
    "LocalRegistry",
    "Route",
    "ScriptedRegistry",
    "free_port",
    "local_registry",
    "require_registry",
]

REGISTRY_BINARY = Path("/usr/bin/docker-registry")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LocalRegistry:
    """A running ``docker-registry serve`` on 127.0.0.1:port."""

    port: int
    root: Path
    process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        """host:port, as image references write it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def reference(self, repository: str, digest: str) -> str:
        return f"{self.host}/{repository}@{digest}"

    def start(self, timeout_s: float = 20.0) -> LocalRegistry:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        log = open(self.root / "registry.log", "ab")
        try:
            self.process = subprocess.Popen(
                [str(REGISTRY_BINARY), "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"docker-registry did not serve {self.url}/v2/: {(self.root / 'registry.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def push(self, image: str, name: str, env: Mapping[str, str]) -> str:
        """Pushes the local ``image`` as ``<host>/<name>`` (name with a tag); returns the pushed
        manifest's digest (it may differ from the local one)."""
        digest_file = self.root / f"digest-{name.replace('/', '_').replace(':', '_')}"
        done = subprocess.run(
            ["podman", "push", "--tls-verify=false", "--digestfile", str(digest_file), image, f"{self.host}/{name}"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman push failed ({done.returncode}): {done.stderr[-2000:]}")
        return digest_file.read_text().strip()

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> None:
        """PUT a manifest (or index) as the registry API does (its blobs or manifests must be there)."""
        request = urllib.request.Request(
            f"{self.url}/v2/{repository}/manifests/{reference}",
            data=body,
            method="PUT",
            headers={"Content-Type": media_type},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201, answer.status


def require_registry() -> None:
    if not REGISTRY_BINARY.exists():
        pytest.skip(f"{REGISTRY_BINARY} is not installed (Debian package docker-registry)")


@contextmanager
def local_registry(root: Path) -> Iterator[LocalRegistry]:
    """A real registry on loopback with its storage under ``root``; stopped on the way out."""
    require_registry()
    registry = LocalRegistry(free_port(), root).start()
    try:
        yield registry
    finally:
        registry.stop()


# ---------------------------------------------------------------------- a scripted registry


@dataclass
class Route:
    """One scripted answer: status, body, headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True  # False: no Content-Length, the body ends when the connection closes


class ScriptedRegistry:
    """A real HTTP server on 127.0.0.1 answering GETs from ``routes`` (path -> Route, or a
    callable of the request handler returning a Route; the path includes any query)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Callable[[http.server.BaseHTTPRequestHandler], Route]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, {k: v for k, v in self.headers.items()}))
                route = outer.routes.get(self.path) or outer.routes.get(self.path.split("?")[0])
                if callable(route):
                    route = route(self)
                if route is None:
                    route = Route(
                        404,
                        json.dumps({"errors": [{"code": "NAME_UNKNOWN"}]}).encode(),
                        {"Content-Type": "application/json"},
                    )
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.content_length:
                    self.send_header("Content-Length", str(len(route.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="scripted-registry", daemon=True
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> ScriptedRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
