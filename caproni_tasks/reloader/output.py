"""One terminal, many processes: whole lines, each behind its process's ``name |``.

Children write arbitrary chunks; this assembles them into lines per process so two
processes never interleave mid-line, pads names so the bars line up, and colours the
prefixes on a terminal. Writes that fail (terminal closed on SIGHUP, broken pipe) turn
output off instead of interrupting the cleanup that follows.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import BinaryIO

__all__ = ["LineAssembler", "Output"]

# Bright, readable on dark and light backgrounds; red is kept for the supervisor's errors.
_PALETTE = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"


class Output:
    """Writes prefixed lines to a binary stream (stdout by default)."""

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        color: bool | None = None,
        names: Iterable[str] = (),
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        if color is None:
            color = not os.environ.get("NO_COLOR") and _isatty(self._stream)
        self.color = color
        self._width = 0
        self._colors: dict[str, int] = {}
        self.broken = False
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
        self._write(b"".join(prefix + line.rstrip(b"\r") + b"\n" for line in lines))

    def event(self, name: str, message: str, *, error: bool = False) -> None:
        """A supervisor message about process ``name`` (started, exited, restarting…)."""
        text = f":: {message}"
        if self.color:
            text = f"{_RED if error else _DIM}{text}{_RESET}"
        self._write(self._prefix(name) + text.encode() + b"\n")

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            # EIO after the terminal closed, EPIPE from a closed pager: keep running quietly.
            self.broken = True


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
