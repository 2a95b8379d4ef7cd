"""gpumarket.containers.registry against a real registry (Debian's docker-registry on loopback, the
test Python image pushed to it with podman) and against scripted registries of our own for what a
real one would not do: serve wrong bytes, dance for a token, send too much, redirect away."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpumarket.containers.reference import parse_image_reference
from gpumarket.containers.registry import (
    DOCKER_LIST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageStatus,
    RegistryClient,
    RegistryTimeouts,
)
from helpers.registry import (
    LocalRegistry,
    Route,
    ScriptedRegistry,
    free_port,
    local_registry,
)


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def ref(text: str):
    return parse_image_reference(text)


# ---------------------------------------------------------------------- the real registry


class Pushed:
    """The test image as pushed to the module's registry: its digest, manifest and true size."""

    def __init__(self, registry: LocalRegistry, digest: str, manifest: bytes, size: int) -> None:
        self.registry = registry
        self.digest = digest
        self.manifest = manifest
        self.size = size

    def reference(self, repository: str = "gm/python", digest: str | None = None):
        return ref(self.registry.reference(repository, digest or self.digest))


def blob_sizes(storage: Path) -> dict[str, int]:
    """Every blob the registry stores (digest -> bytes on its disk)."""
    blobs = storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {f"sha256:{data.parent.name}": data.stat().st_size for data in blobs.glob("*/*/data")}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, podman_env, python_image) -> Iterator[Pushed]:
    root = tmp_path_factory.mktemp("registry")
    with local_registry(root) as registry:
        digest = registry.push(python_image, "gm/python:t", podman_env)
        # The true size from the registry's own disk: every blob the push stored but the manifest.
        blobs = blob_sizes(root / "storage")
        manifest_path = (
            root / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data"
        )
        manifest = manifest_path.read_bytes()
        assert digest_of(manifest) == digest
        size = sum(blobs.values()) - len(manifest)
        assert size > 10 * 2**20  # a real image: config and a Debian root filesystem layer
        yield Pushed(registry, digest, manifest, size)


@pytest.fixture(scope="module")
def client(pushed: Pushed) -> RegistryClient:
    return RegistryClient({pushed.registry.host: pushed.registry.url})


def test_found_with_the_size_of_config_and_layers(pushed: Pushed, client: RegistryClient) -> None:
    check = client.check(pushed.reference())
    assert check.status is ImageStatus.FOUND, check.detail
    assert check.size_bytes == pushed.size
    document = json.loads(pushed.manifest)
    assert check.size_bytes == document["config"]["size"] + sum(layer["size"] for layer in document["layers"])


def test_an_index_is_sized_by_its_largest_linux_manifest(pushed: Pushed, client: RegistryClient) -> None:
    document = json.loads(pushed.manifest)
    # A second manifest over the same blobs, its layer listed twice: larger than the first.
    bigger = json.dumps({**document, "layers": document["layers"] * 2}, separators=(",", ":")).encode()
    pushed.registry.put_manifest("gm/python", digest_of(bigger), bigger, OCI_MANIFEST)
    layer = document["layers"][0]["size"]
    # A manifest that only a windows platform uses: never counted, however large.
    biggest = json.dumps({**document, "layers": document["layers"] * 3}, separators=(",", ":")).encode()
    pushed.registry.put_manifest("gm/python", digest_of(biggest), biggest, OCI_MANIFEST)

    def entry(body: bytes, os: str, arch: str) -> dict:
        return {
            "mediaType": OCI_MANIFEST,
            "digest": digest_of(body),
            "size": len(body),
            "platform": {"os": os, "architecture": arch},
        }

    for media_type in (OCI_INDEX, DOCKER_LIST):
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "manifests": [
                    entry(pushed.manifest, "linux", "amd64"),
                    entry(bigger, "linux", "arm64"),
                    entry(biggest, "windows", "amd64"),
                ],
            }
        ).encode()
        pushed.registry.put_manifest("gm/python", digest_of(index), index, media_type)
        check = client.check(pushed.reference(digest=digest_of(index)))
        assert check.status is ImageStatus.FOUND, check.detail
        assert check.size_bytes == pushed.size + layer


def test_unknown_digest_and_unknown_name_are_not_found(pushed: Pushed, client: RegistryClient) -> None:
    unknown = digest_of(b"no such manifest")
    check = client.check(pushed.reference(digest=unknown))
    assert check.status is ImageStatus.NOT_FOUND and check.size_bytes is None
    assert "MANIFEST_UNKNOWN" in check.detail
    check = client.check(pushed.reference(repository="gm/nothing-here"))
    assert check.status is ImageStatus.NOT_FOUND, check.detail


@pytest.mark.parametrize(
    "text",
    [
        "localhost/gpumarket-python@{digest}",  # lives only on a provider's machine
        "localhost:5000/gm/python@{digest}",
        "gm/python@{digest}",  # no registry: the engine's default applies
        "ghcr.io/gm/python@{digest}",  # a registry this client is not configured with
    ],
)
def test_references_it_cannot_ask_about_are_uncheckable(pushed: Pushed, text: str) -> None:
    with ScriptedRegistry() as elsewhere:
        client = RegistryClient({pushed.registry.host: pushed.registry.url, "other.example": elsewhere.url})
        check = client.check(ref(text.format(digest=pushed.digest)))
        assert check.status is ImageStatus.UNCHECKABLE, check.detail
        assert elsewhere.requests == []  # nothing was asked anywhere
    if text.startswith("localhost/"):
        assert "provider-local" in check.detail


def test_registry_hosts_match_case_insensitively(pushed: Pushed) -> None:
    client = RegistryClient({pushed.registry.host.upper(): pushed.registry.url})
    assert client.check(pushed.reference()).status is ImageStatus.FOUND


def test_a_stopped_registry_and_a_closed_port_are_unreachable(tmp_path: Path, pushed: Pushed) -> None:
    with local_registry(tmp_path) as registry:
        host, url = registry.host, registry.url
    stopped = RegistryClient({host: url}).check(ref(f"{host}/gm/python@{pushed.digest}"))
    assert stopped.status is ImageStatus.UNREACHABLE and "ConnectionRefused" in stopped.detail
    port = free_port()
    closed = RegistryClient({f"127.0.0.1:{port}": f"http://127.0.0.1:{port}"})
    check = closed.check(ref(f"127.0.0.1:{port}/gm/python@{pushed.digest}"))
    assert check.status is ImageStatus.UNREACHABLE


def test_base_urls_are_checked() -> None:
    for base in ("ftp://x", "127.0.0.1:5000", "http://", "http://h:99999", "http://u:p@h", "http://h/?q=1"):
        with pytest.raises(ValueError):
            RegistryClient({"h": base})
    with pytest.raises(ValueError):
        RegistryClient({"h/x": "http://h"})


# ---------------------------------------------------------------------- scripted registries

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b"c"), "size": 1000},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(b"l"), "size": 5000},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(b"m"), "size": 7},
        ],
    }
).encode()
DIGEST = digest_of(MANIFEST)
PATH = f"/v2/gm/app/manifests/{DIGEST}"


def scripted_client(fake: ScriptedRegistry, **kwargs) -> RegistryClient:
    return RegistryClient({fake.host: fake.url}, **kwargs)


def scripted_ref(fake: ScriptedRegistry, digest: str = DIGEST):
    return ref(f"{fake.host}/gm/app@{digest}")


def test_scripted_manifest_is_found_and_the_accept_header_names_every_manifest_type() -> None:
    with ScriptedRegistry() as fake:
        fake.routes[PATH] = Route(200, MANIFEST, {"Content-Type": OCI_MANIFEST})
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.FOUND and check.size_bytes == 6007
        accept = fake.requests[0][1]["Accept"]
        for media_type in (
            OCI_MANIFEST,
            OCI_INDEX,
            "application/vnd.docker.distribution.manifest.v2+json",
            DOCKER_LIST,
        ):
            assert media_type in accept


def test_bytes_that_do_not_hash_to_the_digest_are_not_trusted() -> None:
    with ScriptedRegistry() as fake:
        # A plausible manifest that claims a tiny image, served for another manifest's digest.
        lie = MANIFEST.replace(b'"size": 5000', b'"size": 1')
        fake.routes[PATH] = Route(200, lie, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": DIGEST})
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.UNREACHABLE and check.size_bytes is None
        assert "not trusted" in check.detail and digest_of(lie) in check.detail


def token_registry(fake: ScriptedRegistry, token: str = "tok-123", grant: bool = True) -> None:
    """The registry's 401 + Bearer challenge in front of MANIFEST; its realm grants ``token``
    only for the right service and scope."""
    challenge = f'Bearer realm="{fake.url}/token",service="test-registry",scope="repository:gm/app:pull"'

    def manifest(handler) -> Route:
        if handler.headers.get("Authorization") == f"Bearer {token}":
            return Route(200, MANIFEST, {"Content-Type": OCI_MANIFEST})
        return Route(
            401,
            b'{"errors":[{"code":"UNAUTHORIZED"}]}',
            {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
        )

    def token_endpoint(handler) -> Route:
        expected = "/token?service=test-registry&scope=repository%3Agm%2Fapp%3Apull"
        if not grant or handler.path != expected:
            return Route(403, b'{"details":"no"}')
        return Route(
            200, json.dumps({"token": token, "expires_in": 300}).encode(), {"Content-Type": "application/json"}
        )

    fake.routes[PATH] = manifest
    fake.routes["/token"] = token_endpoint


def test_anonymous_bearer_token_flow() -> None:
    with ScriptedRegistry() as fake:
        token_registry(fake)
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.FOUND and check.size_bytes == 6007, check.detail
        paths = [path for path, _ in fake.requests]
        assert paths == [PATH, "/token?service=test-registry&scope=repository%3Agm%2Fapp%3Apull", PATH]
        assert "Authorization" not in fake.requests[0][1]
        assert fake.requests[2][1]["Authorization"] == "Bearer tok-123"


def test_a_refused_token_or_a_token_the_registry_refuses_is_unreachable() -> None:
    with ScriptedRegistry() as fake:
        token_registry(fake, grant=False)
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.UNREACHABLE and "auth failed" in check.detail
    with ScriptedRegistry() as fake:
        token_registry(fake, token="the-registry-wants-this")
        fake.routes["/token"] = Route(200, b'{"token": "something-else"}')
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.UNREACHABLE and "401" in check.detail
        assert len(fake.requests) == 3  # retried once with the token, then gave up


def test_basic_auth_is_credentials_it_does_not_have() -> None:
    with ScriptedRegistry() as fake:
        fake.routes[PATH] = Route(401, b"", {"WWW-Authenticate": 'Basic realm="registry"'})
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.UNREACHABLE and "Basic" in check.detail


@pytest.mark.parametrize("content_length", [True, False])
def test_an_oversized_manifest_is_refused(content_length: bool) -> None:
    # A "manifest" over 4 MiB whose bytes do hash to the digest asked for: refused for its size alone.
    huge = MANIFEST[:-1] + b', "annotations": {"x": "' + b"a" * MAX_MANIFEST_BYTES + b'"}}'
    with ScriptedRegistry() as fake:
        fake.routes[f"/v2/gm/app/manifests/{digest_of(huge)}"] = Route(
            200, huge, {"Content-Type": OCI_MANIFEST}, content_length=content_length
        )
        check = scripted_client(fake).check(scripted_ref(fake, digest_of(huge)))
        assert check.status is ImageStatus.UNREACHABLE and "cap" in check.detail


def test_server_errors_and_timeouts_are_unreachable() -> None:
    with ScriptedRegistry() as fake:
        fake.routes[PATH] = Route(503, b"busy")
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.UNREACHABLE and "503" in check.detail

        def slow(handler) -> Route:
            time.sleep(1.5)
            return Route(200, MANIFEST)

        fake.routes[PATH] = slow
        started = time.monotonic()
        check = scripted_client(fake, timeouts=RegistryTimeouts(connect_s=1, read_s=0.3)).check(scripted_ref(fake))
        assert check.status is ImageStatus.UNREACHABLE and "timed out" in check.detail
        assert time.monotonic() - started < 1.5


def test_a_registry_that_drips_its_manifest_is_cut_off_by_the_checks_time_limit() -> None:
    # Each byte comes well within the read timeout; the whole would take 20 s.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def drip() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: "
                    + OCI_MANIFEST.encode()
                    + b"\r\nContent-Length: %d\r\n\r\n" % len(MANIFEST)
                )
                try:
                    for byte in MANIFEST[:100]:
                        connection.sendall(bytes([byte]))
                        time.sleep(0.2)
                except OSError:
                    pass  # the client hung up

        server = threading.Thread(target=drip, daemon=True)
        server.start()
        client = RegistryClient(
            {f"127.0.0.1:{port}": f"http://127.0.0.1:{port}"},
            timeouts=RegistryTimeouts(connect_s=1, read_s=2, total_s=1.5),
        )
        started = time.monotonic()
        check = client.check(ref(f"127.0.0.1:{port}/gm/app@{DIGEST}"))
        elapsed = time.monotonic() - started
        server.join(30)
    assert check.status is ImageStatus.UNREACHABLE and "timed out" in check.detail
    assert 1.4 <= elapsed < 5, elapsed


def test_redirects_stay_on_the_registry() -> None:
    with ScriptedRegistry() as fake, ScriptedRegistry() as other:
        other.routes[PATH] = Route(200, MANIFEST)
        fake.routes[PATH] = Route(307, b"", {"Location": f"{other.url}{PATH}"})
        check = scripted_client(fake).check(scripted_ref(fake))
        assert check.status is ImageStatus.UNREACHABLE and "another host" in check.detail
        assert other.requests == []
        fake.routes[PATH] = Route(307, b"", {"Location": "/moved"})
        fake.routes["/moved"] = Route(200, MANIFEST, {"Content-Type": OCI_MANIFEST})
        assert scripted_client(fake).check(scripted_ref(fake)).status is ImageStatus.FOUND


def test_an_index_with_too_many_linux_manifests_is_not_sized() -> None:
    entries = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digest_of(str(i).encode()),
            "size": 1,
            "platform": {"os": "linux", "architecture": f"arch{i}"},
        }
        for i in range(17)
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    with ScriptedRegistry() as fake:
        fake.routes[f"/v2/gm/app/manifests/{digest_of(index)}"] = Route(200, index, {"Content-Type": OCI_INDEX})
        check = scripted_client(fake).check(scripted_ref(fake, digest_of(index)))
        assert check.status is ImageStatus.UNCHECKABLE and "17 linux manifests" in check.detail
        assert len(fake.requests) == 1  # none of them fetched


def test_an_index_child_that_is_missing_or_lies_decides_the_check() -> None:
    child = MANIFEST
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest_of(child),
                    "size": len(child),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    with ScriptedRegistry() as fake:
        fake.routes[f"/v2/gm/app/manifests/{digest_of(index)}"] = Route(200, index, {"Content-Type": OCI_INDEX})
        check = scripted_client(fake).check(scripted_ref(fake, digest_of(index)))
        assert check.status is ImageStatus.NOT_FOUND  # the child is unknown (the fake's default 404)
        fake.routes[f"/v2/gm/app/manifests/{digest_of(child)}"] = Route(200, child + b" ")
        check = scripted_client(fake).check(scripted_ref(fake, digest_of(index)))
        assert check.status is ImageStatus.UNREACHABLE and "not trusted" in check.detail
        fake.routes[f"/v2/gm/app/manifests/{digest_of(child)}"] = Route(200, child)
        check = scripted_client(fake).check(scripted_ref(fake, digest_of(index)))
        assert check.status is ImageStatus.FOUND and check.size_bytes == 6007


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"schemaVersion": 1, "name": "gm/app", "fsLayers": []}).encode(),
        json.dumps({"schemaVersion": 2, "config": {"size": 1}, "layers": [{"size": -1}]}).encode(),
        json.dumps({"schemaVersion": 2, "config": {"size": True}, "layers": []}).encode(),
    ],
)
def test_bytes_that_hash_right_but_are_no_sizable_manifest_are_uncheckable(body: bytes) -> None:
    with ScriptedRegistry() as fake:
        fake.routes[f"/v2/gm/app/manifests/{digest_of(body)}"] = Route(200, body)
        check = scripted_client(fake).check(scripted_ref(fake, digest_of(body)))
        assert check.status is ImageStatus.UNCHECKABLE, check.detail
