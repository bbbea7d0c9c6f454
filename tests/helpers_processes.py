"""Helpers for tests that run real processes: waiting on conditions, specs, output."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from caproni_tasks.reloader.backoff import BackoffPolicy
from caproni_tasks.reloader.description import ProcessDescription
from caproni_tasks.reloader.output import Output
from caproni_tasks.reloader.supervisor import Supervisor, SupervisorOptions

#: Generous: the CI machine is slow and shared.
TIMEOUT = 20.0
PY = sys.executable


def wait_until(
    predicate: Callable[[], Any], timeout: float = TIMEOUT, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = TIMEOUT, interval: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        await asyncio.sleep(interval)


async def stays_false(predicate: Callable[[], Any], duration: float) -> bool:
    """True when ``predicate`` stayed falsy for ``duration`` seconds (a quiet period)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if predicate():
            return False
        await asyncio.sleep(0.02)
    return not predicate()


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def spec(name: str, command: str, directory: Path, **fields: Any) -> ProcessDescription:
    return ProcessDescription(name=name, command=command, cwd=directory, **fields)


class CapturedOutput(Output):
    """An `Output` into memory, without colour, with helpers to look at what was written."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        super().__init__(self.buffer, color=False)

    @property
    def text(self) -> str:
        return self.buffer.getvalue().decode("utf-8", "replace")

    def lines_of(self, name: str) -> list[str]:
        out = []
        for line in self.text.splitlines():
            label, bar, rest = line.partition(" | ")
            if bar and label.strip() == name:
                out.append(rest)
        return out

    def count(self, name: str, needle: str) -> int:
        """Lines of ``name`` containing ``needle`` (supervisor messages included)."""
        return sum(1 for line in self.lines_of(name) if needle in line)

    def exact(self, name: str, line: str) -> int:
        """Lines of ``name``'s own output equal to ``line``."""
        return sum(1 for text in self.lines_of(name) if text == line)


def fast_options(**overrides: Any) -> SupervisorOptions:
    """Short backoff for tests: crash restarts in tens of milliseconds, not seconds."""
    values: dict[str, Any] = {
        "backoff": BackoffPolicy(base=0.05, factor=2.0, cap=1.0, healthy_after=60.0),
    }
    values.update(overrides)
    return SupervisorOptions(**values)


@asynccontextmanager
async def supervising(
    reloader: str,
    specs: list[ProcessDescription],
    *,
    supervisor: Supervisor | None = None,
    **options: Any,
) -> Any:
    """Run ``specs`` under a supervisor in a background task; stop everything on exit."""
    output = CapturedOutput()
    sup = supervisor or Supervisor(output=output, options=fast_options(**options))
    task = asyncio.create_task(sup.supervise(reloader, specs))
    await asyncio.sleep(0)  # let supervise register the processes
    try:
        yield sup, sup.output, task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await sup.close()


def write_atomic(path: Path, text: str) -> None:
    """What editors do: write a temporary file beside it and rename over it."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def tree_pids(root: int) -> Iterator[int]:
    from caproni_tasks.reloader.proctree import descendants

    for info in descendants(root):
        yield info.pid


Waiter = Callable[[], Awaitable[Any]]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio through anyio's pytest plugin (``pytest.mark.anyio``)."""
    return "asyncio"
