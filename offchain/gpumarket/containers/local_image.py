"""A Python image built here, from Debian's packages, for the tests and the devnet's container jobs.

No image registry is reachable from the project's machines, so the image the container tests
and ``gpumarket devnet --runtime container`` run is made locally: ``mmdebstrap`` writes a
Debian root filesystem with ``python3`` (the essential package set: sh, coreutils, util-linux)
into a tar file, ``podman import`` turns it into an image, and podman names it by the digest of
its manifest. The build takes about 20 s once; later calls find the image and return at once.

``ensure_python_image`` returns the image's reference pinned by digest
(``localhost/gpumarket-python@sha256:<hex>``), the form a job spec (version 2) requires.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from gpumarket.containers.engine import EngineError, PodmanEngine

__all__ = ["PYTHON_IMAGE", "ImageBuildError", "ensure_python_image", "local_digest"]

PYTHON_IMAGE = "localhost/gpumarket-python:bookworm"
_SUITE = "bookworm"
_BUILD_TIMEOUT_S = 600
_LOCK = Path(tempfile.gettempdir()) / "gpumarket-python-image.lock"


class ImageBuildError(RuntimeError):
    """The local image could not be built; the message says what was missing or failed."""


def local_digest(image: str, env: Mapping[str, str] | None = None) -> str | None:
    """The manifest digest (``sha256:<hex>``) of a local image, None when there is none."""
    engine = PodmanEngine(env=dict(env or {}))
    try:
        digest = engine.image_digest(image) if engine.image_exists(image) else ""
    except EngineError:
        return None
    return digest if digest.startswith("sha256:") else None


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    # Two test processes (or a test and a devnet) must not both build and tag the image.
    with open(_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_python_image(env: Mapping[str, str] | None = None, image: str = PYTHON_IMAGE) -> str:
    """``<name>@sha256:<hex>`` of the local Python image, built first when missing.

    ``env`` is added to podman's environment (``CONTAINERS_CONF``). Raises ImageBuildError
    when podman or mmdebstrap is missing or the build fails."""
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"{tool} is not installed (make containers installs it)")
    name = image.rsplit(":", 1)[0]
    with _build_lock():
        digest = local_digest(image, env)
        if digest is None:
            _build(image, env)
            digest = local_digest(image, env)
            if digest is None:
                raise ImageBuildError(f"podman imported {image} but reports no digest for it")
    return f"{name}@{digest}"


def _build(image: str, env: Mapping[str, str] | None) -> None:
    with tempfile.TemporaryDirectory(prefix="gpumarket-image-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        built = subprocess.run(
            ["mmdebstrap", "--variant=essential", "--include=python3", "--format=tar", _SUITE, str(rootfs)],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if built.returncode != 0:
            raise ImageBuildError(f"mmdebstrap failed ({built.returncode}): {built.stderr.strip()[-2000:]}")
        try:
            PodmanEngine(env=dict(env or {})).import_rootfs(
                rootfs, image, ("ENV PATH=/usr/local/bin:/usr/bin:/bin", "WORKDIR /work"), timeout_s=_BUILD_TIMEOUT_S
            )
        except EngineError as error:
            raise ImageBuildError(f"podman import failed: {error}") from None
