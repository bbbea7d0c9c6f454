"""One timer thread for every retry: sleeps on a condition until the next deadline.

Errors that no file event will clear (permission denied, a directory in place of the
file, an unwatchable directory) are retried every ``wait``; a thread per variable would
be wasteful and a polling loop would burn CPU while nothing is due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("caproni_tasks.runtimevar")

#: Delays are kept within [0, MAX_DELAY] seconds (a year: "never" for a retry) so no
#: value, however large or odd (inf, NaN), can overflow a deadline or a wait.
MAX_DELAY = 365 * 24 * 3600.0
#: The longest single sleep of the timer thread; it just sleeps again if nothing is due.
MAX_SLEEP = 3600.0


def _sanitized(delay: float) -> float:
    if math.isnan(delay) or delay <= 0:
        return 0.0
    return min(delay, MAX_DELAY)


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)
    scheduler: Scheduler | None = field(default=None, compare=False, repr=False)

    def cancel(self) -> None:
        self.cancelled = True
        if self.scheduler is not None:
            self.scheduler._wake()


class Scheduler:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run *callback* on the timer thread after *delay* seconds (unless cancelled).

        The delay is kept within [0, `MAX_DELAY`]. A callback that raises is logged and
        the others still run.
        """
        when = time.monotonic() + _sanitized(delay)
        timer = Timer(when, next(self._seq), callback, scheduler=self)
        with self._cond:
            heapq.heappush(self._heap, timer)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="runtimevar-retry", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return timer

    def pending(self) -> int:
        with self._cond:
            return sum(1 for t in self._heap if not t.cancelled)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _next_due(self) -> Timer | None:
        """The next timer once due; None when nothing is pending (the thread then ends,
        so a process whose variables are all closed keeps no timer thread)."""
        with self._cond:
            while True:
                self._heap = [t for t in self._heap if not t.cancelled]
                heapq.heapify(self._heap)
                if not self._heap:
                    self._thread = None
                    return None
                delay = self._heap[0].when - time.monotonic()
                if delay <= 0:
                    return heapq.heappop(self._heap)
                self._cond.wait(min(delay, MAX_SLEEP))

    def _run(self) -> None:
        try:
            while True:
                timer = self._next_due()
                if timer is None:
                    return
                if timer.cancelled:
                    continue
                try:
                    timer.callback()
                except Exception:  # a failing retry must not stop the others
                    log.exception("runtime variable retry failed")
        finally:
            # Should this thread ever die, the next call_later starts another one
            # instead of queueing timers that nobody runs.
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None


SCHEDULER = Scheduler()
