"""How the installer talks while it works: rich bars on a terminal, plain lines elsewhere.

The installer only sees `Reporter`; rich is imported when a terminal asks for bars,
so a no-op run in a script never pays for it. Both reporters are safe to call from
the fetch and extraction threads.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol, TextIO

__all__ = ["PlainReporter", "Reporter", "RichReporter", "Transfer", "make_reporter"]


class Transfer(Protocol):
    def advance(self, nbytes: int) -> None: ...

    def done(self) -> None: ...


class Reporter(Protocol):
    def line(self, text: str) -> None: ...

    def transfer(self, verb: str, subject: str, total: int | None, *, log: bool = True) -> Transfer:
        """A bar for ``verb`` (e.g. "fetching") of ``subject``; ``log=False`` keeps it off
        plain output (where the installer's own summary line says enough)."""
        ...

    def close(self) -> None: ...


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _done_line(verb: str, subject: str, nbytes: int, start: float) -> str:
    elapsed = max(time.monotonic() - start, 1e-6)
    speed = human_bytes(nbytes / elapsed)
    past = _PAST.get(verb, verb)
    return f"{past} {subject}: {human_bytes(nbytes)} in {elapsed:.1f}s ({speed}/s)"


class _PlainTransfer:
    def __init__(self, out: PlainReporter, verb: str, subject: str) -> None:
        self._out = out
        self._verb = verb
        self._subject = subject
        self._bytes = 0
        self._start = time.monotonic()

    def advance(self, nbytes: int) -> None:
        self._bytes += nbytes

    def done(self) -> None:
        self._out.line(_done_line(self._verb, self._subject, self._bytes, self._start))


_PAST = {"fetching": "fetched", "extracting": "extracted"}


class _SilentTransfer:
    def advance(self, nbytes: int) -> None:
        pass

    def done(self) -> None:
        pass


class PlainReporter:
    """One line per event, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def transfer(self, verb: str, subject: str, total: int | None, *, log: bool = True) -> Transfer:
        if not log:
            return _SilentTransfer()
        return _PlainTransfer(self, verb, subject)

    def close(self) -> None:
        self._stream.flush()


class _RichTransfer:
    def __init__(self, owner: RichReporter, task_id: Any, verb: str, subject: str, log: bool):
        self._owner = owner
        self._task_id = task_id
        self._verb = verb
        self._subject = subject
        self._log = log
        self._bytes = 0
        self._start = time.monotonic()

    def advance(self, nbytes: int) -> None:
        self._bytes += nbytes
        self._owner.progress().update(self._task_id, advance=nbytes)

    def done(self) -> None:
        """Drop the finished bar; what it did stays on screen as one line."""
        self._owner.progress().remove_task(self._task_id)
        if self._log:
            self._owner.line(_done_line(self._verb, self._subject, self._bytes, self._start))


class RichReporter:
    """Live progress bars (bytes, speed) for running transfers, lines for finished ones.

    rich is imported and the live display started on the first transfer only, so a
    run with nothing to transfer costs nothing extra on a terminal either.
    """

    def __init__(self) -> None:
        self._progress: Any = None
        self._lock = threading.Lock()

    def progress(self) -> Any:
        with self._lock:
            if self._progress is None:
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                    TransferSpeedColumn,
                )

                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    transient=True,
                )
                self._progress.start()
            return self._progress

    def line(self, text: str) -> None:
        if self._progress is None:
            print(text, flush=True)
        else:
            self._progress.console.print(text, markup=False, highlight=False)

    def transfer(self, verb: str, subject: str, total: int | None, *, log: bool = True) -> Transfer:
        task_id = self.progress().add_task(f"{verb} {subject}", total=total)
        return _RichTransfer(self, task_id, verb, subject, log)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def make_reporter(stream: TextIO | None = None) -> Reporter:
    stream = stream or sys.stdout
    if getattr(stream, "isatty", lambda: False)():
        return RichReporter()
    return PlainReporter(stream)
