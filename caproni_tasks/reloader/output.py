"""One terminal, many processes: whole lines, each behind its process's ``name |``.

Children write arbitrary chunks; this assembles them into lines per process so two
processes never interleave mid-line, pads names so the bars line up, and colours the
prefixes on a terminal.

Output never blocks supervision. Lines go into a bounded buffer that a writer thread
empties into the stream's file descriptor; a consumer that stops reading (a paused
pager, a full pipe) fills the buffer, and from then on new lines are dropped and
counted, and a one-line count is printed once the consumer reads again. A consumer
that goes away (EPIPE: ``| head -1`` done) calls ``on_closed`` — the session ends as on
SIGTERM. Other write failures (the terminal closed, SIGHUP follows) turn output off.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import BinaryIO

__all__ = ["OUTPUT_BUFFER", "SUPERVISOR_LABEL", "LineAssembler", "Output"]

# Bright, readable on dark and light backgrounds; red is kept for the supervisor's errors.
_PALETTE = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"

#: The name the supervisor's own messages appear under.
SUPERVISOR_LABEL = "caproni"
#: Bytes of output held for a slow consumer before lines are dropped.
OUTPUT_BUFFER = 1024 * 1024
#: How often an idle writer looks whether the reader of a pipe went away.
_PIPE_CHECK_INTERVAL = 0.5
#: An idle writer thread ends after this long (a new one starts with the next line).
_IDLE_EXIT = 5.0


class Output:
    """Writes prefixed lines to a binary stream (stdout by default).

    A stream with a file descriptor is written by a writer thread through a buffer of
    ``limit`` bytes; an in-memory stream (no descriptor, cannot block) is written at once.
    """

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        color: bool | None = None,
        names: Iterable[str] = (),
        limit: int = OUTPUT_BUFFER,
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        if color is None:
            color = not os.environ.get("NO_COLOR") and _isatty(self._stream)
        self.color = color
        self._width = 0
        self._colors: dict[str, int] = {}
        #: Output is off: the stream failed (or its reader went away).
        self.broken = False
        #: The reader went away (EPIPE).
        self.closed = False
        #: Called once (from the writer thread) when the reader goes away.
        self.on_closed: Callable[[], object] | None = None
        #: Lines dropped in all because the consumer was too slow.
        self.dropped_total = 0
        self._limit = limit
        self._fd = _fileno(self._stream)
        self._pipe = self._fd is not None and _is_pipe(self._fd)
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._held = 0  # bytes queued or being written
        self._dropped = 0  # lines dropped and not yet reported
        self._thread: threading.Thread | None = None
        self._atexit = False
        self._gone_later = False  # the idle writer saw the pipe's reader go away
        #: Called with ``(name, lines, is_event)`` for every line written, before the
        #: stream (the session's log ring for ``invoke logs``); must not block.
        self.listeners: list[Callable[[str, list[bytes], bool], None]] = []
        for name in names:
            self.add_name(name)

    def add_name(self, name: str) -> None:
        """Reserve a colour and widen the name column for ``name``."""
        if name not in self._colors:
            self._colors[name] = _PALETTE[len(self._colors) % len(_PALETTE)]
        self._width = max(self._width, len(name))

    def _prefix(self, name: str) -> bytes:
        self.add_name(name)
        padded = name.ljust(self._width)
        if self.color:
            return f"\x1b[{self._colors[name]}m{padded} |{_RESET} ".encode()
        return f"{padded} | ".encode()

    def lines(self, name: str, lines: Iterable[bytes]) -> None:
        """Write complete lines (without their newline) of process ``name``."""
        prefix = self._prefix(name)
        if self.listeners:
            lines = list(lines)
            for listener in self.listeners:
                listener(name, lines, False)
        chunk = [prefix + line.rstrip(b"\r") + b"\n" for line in lines]
        self._write(b"".join(chunk), len(chunk))

    def event(self, name: str, message: str, *, error: bool = False) -> None:
        """A supervisor message about process ``name`` (started, exited, restarting…)."""
        for listener in self.listeners:
            listener(name, [message.encode("utf-8", "replace")], True)
        self._write(self._event_line(name, message, error=error), 1)

    def _event_line(self, name: str, message: str, *, error: bool = False) -> bytes:
        text = f":: {message}"
        if self.color:
            text = f"{_RED if error else _DIM}{text}{_RESET}"
        return self._prefix(name) + text.encode() + b"\n"

    def _drop_notice(self, count: int) -> bytes:
        lines = "line" if count == 1 else "lines"
        return self._event_line(
            SUPERVISOR_LABEL, f"{count} {lines} dropped: output consumer too slow", error=True
        )

    # -- writing -------------------------------------------------------------------

    def _write(self, data: bytes, count: int) -> None:
        if self.broken or not data:
            return
        if self._fd is None:
            self._write_now(data)
            return
        with self._cond:
            if self._held + len(data) > self._limit:
                self._dropped += count
                self.dropped_total += count
                return
            self._queue.append(data)
            self._held += len(data)
            if self._thread is None and not self.broken:
                self._start_writer()
            self._cond.notify()

    def _write_now(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()
        except (OSError, ValueError):
            self.broken = True  # EIO after the terminal closed: keep running quietly

    def _start_writer(self) -> None:
        # What was printed through the stream object before (a notice) comes first.
        with contextlib.suppress(OSError, ValueError):
            if self._stream is sys.stdout.buffer:
                sys.stdout.flush()
            self._stream.flush()
        if not self._atexit:
            self._atexit = True
            atexit.register(self.close)
        self._thread = threading.Thread(target=self._writer, name="caproni-output", daemon=True)
        self._thread.start()

    def _next_batch(self, fd: int) -> bytes | None:
        """What to write next; None when the thread should end (output off, the reader
        of a pipe went away, or idle for a while: `_write` starts a new one)."""
        with self._cond:
            while not self._queue:
                if self.broken:
                    break
                if self._pipe:
                    # Keep watching the pipe: `| head -1` ends the session even when
                    # nothing more is printed.
                    self._cond.wait(_PIPE_CHECK_INTERVAL)
                    if not self._queue and not self.broken and _reader_closed(fd):
                        break
                elif not self._cond.wait(_IDLE_EXIT) and not self._queue:
                    self._thread = None
                    return None
            if self.broken or not self._queue:
                self._thread = None
                if not self.broken:
                    self._gone_later = True
                return None
            batch = b"".join(self._queue)
            self._queue.clear()
            return batch

    def _writer(self) -> None:
        """The writer thread: the only place that may block on the consumer."""
        fd = self._fd
        assert fd is not None
        while True:
            batch = self._next_batch(fd)
            if batch is None:
                if self._gone_later:
                    self._reader_gone()
                return
            error = _write_all(fd, batch)
            with self._cond:
                self._held -= len(batch)
                if error is None and self._dropped:
                    notice = self._drop_notice(self._dropped)
                    self._dropped = 0
                    self._queue.appendleft(notice)
                    self._held += len(notice)
                self._cond.notify_all()
            if isinstance(error, BrokenPipeError):
                self._reader_gone()
                return
            if error is not None:
                with self._cond:
                    self.broken = True
                    self._queue.clear()
                    self._held = 0
                    self._thread = None
                    self._cond.notify_all()
                return

    def _reader_gone(self) -> None:
        with self._cond:
            first = not self.closed
            self.broken = self.closed = True
            self._queue.clear()
            self._held = 0
            self._thread = None
            self._cond.notify_all()
        if self._fd is not None:
            # Later writes to the descriptor (by anyone, at exit too) go nowhere instead
            # of failing with EPIPE.
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._fd)
                os.close(devnull)
        if first and self.on_closed is not None:
            with contextlib.suppress(RuntimeError):  # its event loop may be closed
                self.on_closed()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything buffered is written (at most ``timeout`` seconds: a
        consumer that stays stuck loses the rest). True when all of it was written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._held and not self.broken:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return not self.broken

    def close(self, timeout: float = 2.0) -> None:
        """Write what is buffered (see `flush`); output is off afterwards."""
        self.flush(timeout)
        with self._cond:
            self.broken = True
            self._cond.notify_all()


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _reader_closed(fd: int) -> bool:
    """Whether the other end of the pipe ``fd`` writes to has been closed."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _write_all(fd: int, data: bytes) -> OSError | None:
    """Write all of ``data``, blocking as long as the consumer makes us; the error that
    stopped it, if any."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            # Someone made the descriptor non-blocking: wait until it takes more.
            with contextlib.suppress(OSError, ValueError):
                select.select([], [fd], [], 1.0)
            continue
        except OSError as exc:
            return exc
        view = view[written:]
    return None


def _isatty(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class LineAssembler:
    """Splits a child's byte stream into lines; holds a trailing partial line until its
    newline arrives or it has waited ``partial_after`` seconds (prompts without newline)."""

    def __init__(self, *, max_line: int = 64 * 1024, partial_after: float = 0.5) -> None:
        self._pending = bytearray()
        self._pending_since = 0.0
        self._max_line = max_line
        self.partial_after = partial_after

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending += chunk
        *complete, rest = self._pending.split(b"\n")
        out = [bytes(line) for line in complete]
        if complete:
            self._pending_since = time.monotonic()
        # A single enormous line is cut into pieces rather than buffered without bound.
        while len(rest) > self._max_line:
            out.append(bytes(rest[: self._max_line]))
            rest = rest[self._max_line :]
        self._pending = bytearray(rest)
        return out

    @property
    def has_partial(self) -> bool:
        return bool(self._pending)

    def partial_due(self) -> bool:
        return bool(self._pending) and (
            time.monotonic() - self._pending_since >= self.partial_after
        )

    def flush(self) -> list[bytes]:
        """The partial line, if any (at EOF, or when it waited long enough)."""
        if not self._pending:
            return []
        line = bytes(self._pending)
        self._pending.clear()
        return [line]
