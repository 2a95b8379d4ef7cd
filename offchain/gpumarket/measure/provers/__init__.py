"""Provers: numpy on the CPU, torch on every visible CUDA GPU (or torch's CPU device), and ray
on every GPU of the Ray cluster this process has joined (a cluster provider's agent).

The torch and ray provers are imported only when asked for, so this package works without them.
"""

from __future__ import annotations

import importlib.util

from gpumarket.measure.provers.base import ProverError, TileProver
from gpumarket.measure.provers.numpy_prover import NumpyProver

__all__ = [
    "BACKENDS",
    "CLUSTER_BACKENDS",
    "NumpyProver",
    "ProverError",
    "TileProver",
    "available_backends",
    "cuda_available",
    "make_prover",
]

# The backends of one machine, which `auto` chooses between.
BACKENDS = ("numpy", "torch")
# Backends that answer on a cluster the agent drives (chosen by its runtime, never by `auto`).
CLUSTER_BACKENDS = ("ray",)


def _torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def available_backends() -> list[str]:
    """The backends this machine can run: numpy always, torch when it is installed."""
    return [backend for backend in BACKENDS if backend != "torch" or _torch_installed()]


def cuda_available() -> bool:
    """Whether torch is installed and sees at least one CUDA GPU."""
    if not _torch_installed():
        return False
    import torch

    return bool(torch.cuda.is_available())


def make_prover(backend: str = "auto") -> TileProver:
    """A prover for ``backend``: numpy, torch, auto (torch when it sees a GPU, else numpy), or ray
    (every GPU of the joined Ray cluster, each node on its own auto backend)."""
    if backend == "auto":
        backend = "torch" if cuda_available() else "numpy"
    if backend == "numpy":
        return NumpyProver()
    if backend == "torch":
        if not _torch_installed():
            raise ProverError("the torch backend needs torch: pip install -e '.[gpu]' (make test-torch does)")
        from gpumarket.measure.provers.torch_prover import TorchProver

        return TorchProver()
    if backend == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ProverError("the ray backend needs Ray: pip install 'gpumarket[ray]'")
        from gpumarket.measure.provers.ray_prover import RayProver

        return RayProver()
    raise ProverError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS + CLUSTER_BACKENDS)}")
