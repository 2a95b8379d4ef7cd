"""Shared by the measurement tests: the ``gpu`` marker and the NVML facts a GPU test checks against.

Tests marked ``gpu`` need an NVIDIA GPU with a working driver; elsewhere they are skipped with
NVML's own reason (``pytest -m gpu`` selects them, as bench/gpu_check.sh does).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest

from gpumarket.measure.nvml import NvmlUnavailable, as_text, nvml_session


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU and driver (NVML); skipped where there is none")


@dataclass(frozen=True)
class NvmlGpu:
    """One GPU as NVML itself answers, read without gpumarket's inventory code."""

    index: int
    name: str
    uuid: str
    memory_total_bytes: int


@functools.cache
def _nvml_gpus() -> tuple[list[NvmlGpu], str]:
    try:
        with nvml_session() as pynvml:
            gpus = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                gpus.append(
                    NvmlGpu(
                        index,
                        as_text(pynvml.nvmlDeviceGetName(handle)),
                        as_text(pynvml.nvmlDeviceGetUUID(handle)),
                        int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    )
                )
    except NvmlUnavailable as error:
        return [], f"no NVIDIA GPU here: {error}"
    return gpus, "NVML lists no GPU"


# Function-scoped on purpose: a session fixture that skips upsets boa's pytest plugin, which
# anchors its EVM state around every fixture setup and unwinds the anchors out of order.
@pytest.fixture
def nvml_gpus() -> list[NvmlGpu]:
    """NVML's own list of GPUs; skips the test (with NVML's reason) where there is none."""
    gpus, why = _nvml_gpus()
    if not gpus:
        pytest.skip(why)
    return gpus
