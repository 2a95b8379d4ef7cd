"""Keys stepped when they fall due, by a persistent pool of workers (the oracle's job loop).

    schedule = DueSchedule(clock=time.time, lag_window_s=30.0, on_drop=forget)
    schedule.add(job_id, due)               # followed from ``due`` on (an earlier due wins)
    schedule.hurry(job_id, now)             # a followed key's next step comes now
    schedule.remove(job_id)                 # no longer followed: on_drop(job_id) once no worker holds it
    schedule.serve(step, workers=16, stop=stop)   # the pool, until stop is set
    schedule.run_due(now, step)             # or: step what is due at ``now`` once, in this thread

``step(taken)`` does one key's work (:class:`Taken`: the key, when it was due, when its step
started) and returns when the key is next due (``math.inf``: not until hurried or removed).

- **One key, one worker.** A key leaves the heap while a worker holds it and goes back only
  when its step returns, so a key is never stepped twice at once, and a slow step (a challenge
  that hangs) holds up its own key and one worker, nobody else.
- **Earliest due first.** When more is due than the workers can take, the key that has been
  due longest goes next: the oldest work keeps moving and lateness spreads evenly over the
  keys instead of starving some.
- **Flat cost per key.** A heap of ``(due, seq, key)``: adding, taking and putting back a key
  is O(log n), and nothing walks every key (entries made stale by ``remove`` or ``hurry`` are
  skipped when they surface, and the heap is rebuilt once they outnumber the live ones, which
  is O(1) amortized per operation). Of the idle workers one sleeps until the earliest due time
  and the others until there is more to do, so a key falling due wakes one worker, not all.

**Lag** is how late a step starts: its start less its due time, where a due time already past
when the key was put back counts from that moment (a step that outlasts its own interval is
not the pool's lateness). :meth:`DueSchedule.lag` is the larger of the most overdue waiting
key's lag now (it grows while every worker is busy) and the largest lag of a step started
within the last ``lag_window_s`` (so a burst is still seen for a while after it).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DueSchedule", "Taken"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

ERROR_RETRY_S = 1.0  # a step that raised (a bug, not the provider) is tried again this much later
IDLE_WAIT_S = 1.0  # an idle worker looks again at least this often (a wall clock set back, say)


@dataclass(frozen=True)
class Taken(Generic[K]):
    """A key a worker took: when it was due and when its step started (the schedule's clock)."""

    key: K
    due: float
    started: float

    @property
    def lag(self) -> float:
        return max(0.0, self.started - self.due)


class _WindowMax:
    """The largest value added within the last ``window`` seconds: a deque of decreasing values,
    O(1) amortized per add and read."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._values: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float) -> None:
        while self._values and self._values[-1][1] <= value:
            self._values.pop()
        self._values.append((at, value))

    def max(self, now: float) -> float:
        while self._values and self._values[0][0] < now - self.window:
            self._values.popleft()
        return self._values[0][1] if self._values else 0.0


class DueSchedule(Generic[K]):
    """Keys by next due time, taken by workers earliest first; see the module docstring.

    Thread-safe. ``on_drop(key)`` runs once a removed key is held by no worker (outside the
    schedule's lock, on the thread that removed or released it)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        lag_window_s: float = 60.0,
        on_drop: Callable[[K], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_drop = on_drop
        self._lock = threading.Lock()
        # Idle workers: one (the timer) sleeps until the earliest due time, the others until
        # there is more to do, so a key falling due wakes one worker, not all of them.
        self._timer = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._timer_waiting = False
        self._heap: list[tuple[float, int, K]] = []
        self._queued: dict[K, tuple[float, int]] = {}  # waiting keys -> their live heap entry
        self._held: dict[K, float] = {}  # keys in a worker -> the earliest hurry meanwhile
        self._dropped: set[K] = set()  # held keys removed meanwhile
        self._seq = itertools.count()  # ties go in the order keys were put in
        self._lags = _WindowMax(lag_window_s)
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._queued) + len(self._held) - len(self._dropped)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._queued or (key in self._held and key not in self._dropped)

    # ------------------------------------------------------------------ keys in and out

    def add(self, key: K, due: float) -> None:
        """Follows ``key`` from ``due`` on; for a key already followed, only an earlier due counts."""
        with self._lock:
            if key in self._held:
                self._dropped.discard(key)  # removed and added again while a worker held it
                self._held[key] = min(self._held[key], due)
            else:
                self._put(key, due)
                self._wake()

    def hurry(self, key: K, due: float) -> None:
        """Moves a followed key's next step to ``due`` if that is earlier; a key not followed stays out."""
        with self._lock:
            if key in self._held and key not in self._dropped:
                self._held[key] = min(self._held[key], due)
            elif key in self._queued:
                self._put(key, due)
                self._wake()

    def remove(self, key: K) -> None:
        """Stops following ``key`` (idempotent); a worker holding it finishes its step first."""
        with self._lock:
            if key in self._held:
                self._dropped.add(key)
                return
            if self._queued.pop(key, None) is None:
                return
            self._compact()
        if self._on_drop is not None:
            self._on_drop(key)

    def _put(self, key: K, due: float) -> None:
        current = self._queued.get(key)
        if current is not None and current[0] <= due:
            return
        entry = (due, next(self._seq))
        self._queued[key] = entry
        heapq.heappush(self._heap, (*entry, key))
        self._compact()

    def _wake(self) -> None:
        """A key went in or moved earlier: the timer looks again (or an idle worker, if none)."""
        (self._timer if self._timer_waiting else self._idle).notify()

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._queued) + 64:
            self._heap = [(due, seq, key) for key, (due, seq) in self._queued.items()]
            heapq.heapify(self._heap)

    # ------------------------------------------------------------------ taking and putting back

    def _earliest(self) -> float | None:
        """The earliest due time waiting (stale entries on top are dropped on the way)."""
        while self._heap:
            due, seq, key = self._heap[0]
            if self._queued.get(key) == (due, seq):
                return due
            heapq.heappop(self._heap)
        return None

    def _take(self, now: float) -> Taken[K] | None:
        due = self._earliest()
        if due is None or due > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._queued[key]
        self._held[key] = math.inf
        taken = Taken(key, due, now)
        self._lags.add(now, taken.lag)
        return taken

    def release(self, key: K, due: float, now: float) -> None:
        """A worker is done with ``key``: it is next due at ``due`` (or when it was hurried
        meanwhile, if earlier), not before ``now``; a key removed meanwhile is dropped."""
        with self._lock:
            hurried = self._held.pop(key)
            dropped = key in self._dropped
            if dropped:
                self._dropped.discard(key)
            else:
                self._put(key, max(min(due, hurried), now))
                self._wake()
        if dropped and self._on_drop is not None:
            self._on_drop(key)

    def lag(self, now: float) -> float:
        """How far behind the keys are now: see the module docstring."""
        with self._lock:
            earliest = self._earliest()
            overdue = 0.0 if earliest is None else max(0.0, now - earliest)
            return max(overdue, self._lags.max(now))

    # ------------------------------------------------------------------ drivers

    def run_due(self, now: float, step: Callable[[Taken[K]], float]) -> None:
        """Steps every key due at ``now`` once, earliest first, in this thread (``now`` is the
        start of each step). An error propagates once every key taken is back in the schedule."""
        with self._lock:
            taken: list[Taken[K]] = []
            while (item := self._take(now)) is not None:
                taken.append(item)
        pending = {item.key: item for item in taken}
        try:
            for item in taken:
                due = step(item)
                del pending[item.key]
                self.release(item.key, due, now)
        finally:
            for item in pending.values():
                self.release(item.key, item.due, now)

    def serve(
        self, step: Callable[[Taken[K]], float], *, workers: int, stop: threading.Event, name: str = "due"
    ) -> None:
        """Runs ``workers`` threads that step keys as they fall due, until ``stop`` is set; returns
        once each has finished the step it was in."""
        threads = [
            threading.Thread(target=self._work, args=(step,), name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in threads:
            thread.start()
        stop.wait()
        with self._lock:
            self._closed = True
            self._timer.notify_all()
            self._idle.notify_all()
        for thread in threads:
            thread.join()

    def _work(self, step: Callable[[Taken[K]], float]) -> None:
        while (taken := self._next()) is not None:
            try:
                due = step(taken)
            except Exception:  # noqa: BLE001 - a bug in one step must not end the worker or lose the key
                log.exception("step of %r failed", taken.key)
                due = self._clock() + ERROR_RETRY_S
            self.release(taken.key, due, self._clock())

    def _next(self) -> Taken[K] | None:
        """The earliest key once it is due (waiting for it); None once the schedule is closed."""
        with self._lock:
            while not self._closed:
                now = self._clock()
                taken = self._take(now)
                if taken is not None:
                    self._idle.notify()  # the next key needs a timer (if this worker was it)
                    return taken
                if self._timer_waiting:
                    self._idle.wait()
                    continue
                earliest = self._earliest()
                self._timer_waiting = True
                self._timer.wait(IDLE_WAIT_S if earliest is None else min(earliest - now, IDLE_WAIT_S))
                self._timer_waiting = False
            return None
