"""CPU hogs: processes that spin a core each, so every service shares a saturated machine.

    with BusyLoops(4) as busy:      # started now
        ...                         # killed on the way out, whatever ends the block

Each loop is `python -c` spinning in pure Python. It also checks, between short bursts, that
its parent is still this process and exits when not: a soak killed outright (SIGKILL, no
`finally`) leaves no hog behind.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import TracebackType

__all__ = ["BusyLoops"]

log = logging.getLogger(__name__)

# A burst of ~50 ms between checks of the parent: cheap next to the spinning itself.
_PROGRAM = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(2_000_000):
        pass
"""
_STOP_TIMEOUT_S = 5.0


class BusyLoops:
    """`count` busy-loop processes; see the module docstring."""

    def __init__(self, count: int) -> None:
        if count < 0:
            raise ValueError("the number of busy loops must be >= 0")
        self.count = count
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def start(self) -> BusyLoops:
        for _ in range(self.count):
            self._processes.append(
                subprocess.Popen(
                    [sys.executable, "-S", "-c", _PROGRAM, str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        log.info("started %d busy loop(s): pids %s", self.count, self.pids)
        return self

    def stop(self) -> None:
        """Kill every loop this object started and reap it (safe to call twice)."""
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                process.kill()
        for process in processes:
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("busy loop %d did not exit after SIGKILL", process.pid)
        if processes:
            log.info("stopped %d busy loop(s)", len(processes))

    def __enter__(self) -> BusyLoops:
        try:
            return self.start()
        except BaseException:
            self.stop()  # the ones already started
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
