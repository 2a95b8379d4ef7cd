"""How much the verifier's own process was held up while it timed a challenge.

The verifier times a challenge on its own monotonic clock, from sending it (t0) to reading the
commitment (t1). If the verifier's process is not scheduled when the commitment arrives (a
loaded machine, a stopped process, a thread waiting for the GIL), t1 is read late and the
provider looks slower than it is: the oracle would blame the provider for its own delay.

``SchedulingWatch`` measures that delay directly: while a challenge is timed, a thread of the
verifier's process sleeps in short steps and records how late each wake-up is. A process that
is starved, stopped or fighting for the GIL wakes late, and the largest lateness bounds how
much of the timed window any single stall of this process took. A second look at the wall
clock shows whether the system clock jumped meanwhile (the timing itself uses the monotonic
clock, but a jump means someone is changing the machine's time: not a moment to trust it).

The watch only ever makes a measurement *less* trusted, never faster: how a result is judged
with it is gpumarket.oracle.trust's business.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["Disturbance", "SchedulingWatch"]


@dataclass(frozen=True)
class Disturbance:
    """What the watch saw: the largest wake-up lateness and the wall clock's jump (seconds)."""

    max_stall_s: float
    clock_jump_s: float
    wakeups: int


class SchedulingWatch:
    """Context manager: ``with SchedulingWatch() as watch: ...`` then ``watch.result``."""

    def __init__(self, period_s: float = 0.01) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._max_stall = 0.0
        self._wakeups = 0
        self._mono_start = 0.0
        self._wall_start = 0.0
        self.result: Disturbance | None = None

    def __enter__(self) -> SchedulingWatch:
        self._mono_start, self._wall_start = time.monotonic(), time.time()
        self._thread = threading.Thread(target=self._run, name="scheduling-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        expected = time.monotonic() + self.period_s
        while not self._stop.wait(max(0.0, expected - time.monotonic())):
            now = time.monotonic()
            self._max_stall = max(self._max_stall, now - expected)
            self._wakeups += 1
            expected = now + self.period_s

    def __exit__(self, *exc: object) -> None:
        # The stop itself is a wake-up: a stall that ends the window is seen here too.
        stopped = time.monotonic()
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        mono, wall = time.monotonic() - self._mono_start, time.time() - self._wall_start
        self._max_stall = max(self._max_stall, time.monotonic() - stopped)
        self.result = Disturbance(self._max_stall, abs(wall - mono), self._wakeups)
