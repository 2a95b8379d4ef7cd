"""The small part of NVML (nvidia-ml-py, imported as ``pynvml``) that inventory and metering share:
importing it, classifying why it failed, and queries that some GPUs do not support."""

from __future__ import annotations

import enum
import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "NvmlStatus",
    "NvmlUnavailable",
    "as_text",
    "import_pynvml",
    "nvml_available",
    "nvml_query",
    "nvml_session",
    "status_of",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class NvmlStatus(enum.StrEnum):
    """Why NVML did or did not list GPUs."""

    OK = "ok"
    NOT_INSTALLED = "not-installed"  # no pynvml module (nvidia-ml-py not installed)
    LIBRARY_NOT_FOUND = "library-not-found"  # no libnvidia-ml.so: no NVIDIA driver installed
    DRIVER_NOT_LOADED = "driver-not-loaded"  # library present, kernel driver not running
    NO_DEVICES = "no-devices"  # NVML works and sees zero GPUs
    ERROR = "error"  # any other NVML failure (permissions, lost GPU, ...)


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this machine; ``status`` says why."""

    def __init__(self, status: NvmlStatus, detail: str) -> None:
        super().__init__(f"NVML unavailable ({status.value}): {detail}")
        self.status = status
        self.detail = detail


def import_pynvml() -> ModuleType:
    """Imports the NVML binding; raises ImportError where nvidia-ml-py is missing."""
    return importlib.import_module("pynvml")


def status_of(pynvml: ModuleType, error: Exception) -> NvmlStatus:
    """The status that explains an NVML error."""
    if isinstance(error, pynvml.NVMLError_LibraryNotFound):
        return NvmlStatus.LIBRARY_NOT_FOUND
    if isinstance(error, pynvml.NVMLError_DriverNotLoaded):
        return NvmlStatus.DRIVER_NOT_LOADED
    return NvmlStatus.ERROR


@contextmanager
def nvml_session() -> Iterator[ModuleType]:
    """``nvmlInit`` ... ``nvmlShutdown`` around a block; NvmlUnavailable if NVML cannot start."""
    try:
        pynvml = import_pynvml()
    except ImportError as error:
        raise NvmlUnavailable(NvmlStatus.NOT_INSTALLED, f"cannot import pynvml (nvidia-ml-py): {error}") from error
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        raise NvmlUnavailable(status_of(pynvml, error), f"nvmlInit failed: {error}") from error
    try:
        yield pynvml
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as error:  # what was read stands; a failed shutdown is only noted
            log.warning("nvmlShutdown failed: %s", error)


def nvml_available() -> bool:
    """Whether NVML starts on this machine (it may still list no GPU)."""
    try:
        with nvml_session():
            return True
    except NvmlUnavailable:
        return False


def nvml_query(pynvml: ModuleType, query: Callable[..., T], *args: Any) -> T | None:
    """A query that some GPUs do not support (power, energy, ...): any NVML error gives None."""
    try:
        return query(*args)
    except pynvml.NVMLError as error:
        log.debug("NVML %s unavailable: %s", getattr(query, "__name__", query), error)
        return None


def as_text(value: str | bytes) -> str:
    """NVML strings: older bindings return bytes, current ones str."""
    return value.decode() if isinstance(value, bytes) else value
