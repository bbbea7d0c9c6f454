"""The output of one run of a process: its pipe read into whole lines, shown behind the
process's label and fed to a ``ready: {log: …}`` check.

A partial line (a prompt without newline) is shown after ``partial_after`` seconds.
Reading never blocks supervision: the lines go to `Output`, which buffers them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from caproni_tasks.reloader.aio import cancel_and_wait, wait_timeout
from caproni_tasks.reloader.output import LineAssembler

if TYPE_CHECKING:
    from caproni_tasks.reloader.output import Output
    from caproni_tasks.reloader.readiness import LogMatcher

__all__ = ["OutputPump"]

#: Bytes read from the pipe at a time.
_CHUNK = 65536


class OutputPump:
    """Reads ``stream`` until it closes (started at once, in a task of its own)."""

    def __init__(
        self,
        stream: asyncio.StreamReader,
        *,
        label: str,
        output: Output,
        partial_after: float,
        log: LogMatcher | None = None,
    ) -> None:
        self.label = label
        self.output = output
        self.log = log
        self._partial_after = partial_after
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._read(stream), name=f"out {label}"
        )

    def _show(self, lines: list[bytes]) -> None:
        self.output.lines(self.label, lines)
        if self.log is not None:
            for line in lines:
                self.log.feed(line)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        lines = LineAssembler(partial_after=self._partial_after)
        while True:
            try:
                if lines.has_partial:
                    chunk = await wait_timeout(stream.read(_CHUNK), lines.partial_after)
                else:
                    chunk = await stream.read(_CHUNK)
            except TimeoutError:
                if lines.partial_due():
                    # Shown, but not a line for the log check: it may still grow.
                    self.output.lines(self.label, lines.flush())
                continue
            if not chunk:
                break
            complete = lines.feed(chunk)
            if complete:
                self._show(complete)
        rest = lines.flush()
        if rest:
            self.output.lines(self.label, rest)
            if self.log is not None:
                self.log.feed(rest[0])

    async def finish(self, timeout: float = 1.0) -> None:
        """Wait (up to ``timeout`` seconds) for what the run wrote to be read; then stop
        reading (a lingering holder of the pipe must not keep us waiting)."""
        if self._task is None:
            return
        try:
            await wait_timeout(asyncio.shield(self._task), timeout)
        except TimeoutError:
            await cancel_and_wait(self._task)
        self._task = None
