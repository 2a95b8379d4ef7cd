"""What every long-running gpumarket service shares (the provider's and the oracle's).

A stop flag that a signal handler may set, the error that ended a background thread (a
follower that gave up: ``wait`` then returns 1 so a supervisor restarts the service), a ready
file that tells a parent process where the service listens, and ``with service:`` as
start/close. Subclasses provide ``start``, ``close``, ``url`` and ``address``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

__all__ = ["ServiceLifecycle", "serve_until_signalled", "write_ready_file"]

log = logging.getLogger(__name__)


def write_ready_file(path: Path, content: dict[str, Any]) -> None:
    """Writes ``content`` as JSON atomically: a reader never sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content))
    temporary.replace(path)


class ServiceLifecycle:
    """Stop flag, fatal error, ready file and context manager of a service; each service says
    where it serves (``url``) and as whom (``address``)."""

    @property
    def url(self) -> str:  # pragma: no cover - every service defines it
        raise NotImplementedError

    @property
    def address(self) -> str:  # pragma: no cover - every service defines it
        raise NotImplementedError

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._fatal_error: BaseException | None = None

    def start(self) -> Any:  # pragma: no cover - every service defines it
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every service defines it
        raise NotImplementedError

    def _run_until_stopped(self, what: str, run: Callable[[threading.Event], None]) -> None:
        """A background thread's body: ``run(stop)``; an error it raises stops the service."""
        try:
            run(self._stop)
        except BaseException as error:  # noqa: BLE001 - recorded for wait(), then the service stops
            log.error("%s stopped: %s: %s", what, type(error).__name__, error)
            self._fatal_error = error
            self._stop.set()

    @property
    def fatal_error(self) -> BaseException | None:
        """The error that ended a background thread, if one did."""
        return self._fatal_error

    def write_ready_file(self, path: Path) -> None:
        """Atomically writes {"url", "pid", "address"} once the service is up."""
        write_ready_file(path, {"url": self.url, "pid": os.getpid(), "address": self.address})

    def stop(self) -> None:
        """Asks the service to stop (safe from a signal handler)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> int | None:
        """Blocks until stopped; 0, or 1 when a background thread died; None on timeout."""
        if not self._stop.wait(timeout):
            return None
        return 1 if self._fatal_error is not None else 0

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_on_signals(stop: Callable[[], None], what: str = "stopping") -> None:
    """SIGTERM and SIGINT call ``stop`` (in the signal handler, on the main thread: it must not
    block), each logged with ``what``."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: %s", signum, what)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def serve_until_signalled(service: ServiceLifecycle, ready_file: Path | None, what: str = "stopping") -> NoReturn:
    """A started service's command-line life: SIGTERM/SIGINT stop it, the ready file says where
    it listens, and the process exits with ``wait``'s code (0 stopped, 1 a background thread died)."""
    stop_on_signals(service.stop, what)
    if ready_file is not None:
        service.write_ready_file(ready_file)
    code = service.wait()
    service.close()
    sys.exit(code or 0)
