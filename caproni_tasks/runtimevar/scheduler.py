"""One timer thread for every retry: sleeps on a condition until the next deadline.

Errors that no file event will clear (permission denied, a directory in place of the
file, an unwatchable directory) are retried every ``wait``; a thread per variable would
be wasteful and a polling loop would burn CPU while nothing is due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("caproni_tasks.runtimevar")


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
        """Run *callback* on the timer thread after *delay* seconds (unless cancelled)."""
        timer = Timer(time.monotonic() + delay, next(self._seq), callback, scheduler=self)
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
                self._cond.wait(delay)

    def _run(self) -> None:
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


SCHEDULER = Scheduler()
