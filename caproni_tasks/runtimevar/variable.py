"""`Variable` and `Snapshot`: the driver-independent semantics of runtime variables.

A driver pushes states (a `Snapshot` or a `VariableError`) into its `Variable`; callers
read them through a sync face (``latest``, ``watch``, ``changes``) that blocks on a
condition variable, and an async face (``latest_async``, ``watch_async``,
``changes_async``) that parks an asyncio future per waiter and is woken with
``call_soon_threadsafe``: no thread per call, no polling. Every decision is taken under
one lock, so a reader never sees a half-published state.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar, overload

from caproni_tasks.runtimevar.errors import (
    ERR_CLOSED,
    ErrorCode,
    VariableError,
    raise_closed,
)

T = TypeVar("T")
Item = TypeVar("Item")
T_co = TypeVar("T_co", covariant=True)

ErrorMode = Literal["raise", "skip", "yield"]


@dataclass(frozen=True)
class Snapshot(Generic[T_co]):
    """A decoded value and when it was detected (timezone-aware, not the file's mtime).

    The value is left out of ``repr`` so logging a snapshot never leaks a secret.
    """

    value: T_co = field(repr=False)
    update_time: datetime


State = Snapshot[Any] | VariableError
Publish = Callable[[State], None]


class Driver(Protocol):
    """What a `Variable` needs from the code that produces its states."""

    def start(self, publish: Publish) -> None:
        """Begin producing states; call *publish* for each (from any thread)."""

    def stop(self) -> None:
        """Stop producing states and return once no more *publish* calls can happen."""


_NO_VALUE = VariableError(ErrorCode.FAILED_PRECONDITION, "no value yet")


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    return time.monotonic() + max(0.0, timeout)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Variable(Generic[T]):
    """A value that lives outside the program and can change while it runs.

    Open one with `open_variable` (by URL) or `open_file_variable`; close it with
    `close` or a ``with`` block.
    """

    def __init__(self, driver: Driver, *, name: str) -> None:
        self._name = name
        self._driver = driver
        self._cond = threading.Condition(threading.Lock())
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._state: State | None = None
        self._good: Snapshot[T] | None = None
        self._version = 0
        self._watch_cursor = 0
        self._closed = False
        self._stop_lock = threading.Lock()
        driver.start(self._publish)

    # -- identity --------------------------------------------------------------------
    @property
    def name(self) -> str:
        """What the variable reads (its URL or path); safe to log, unlike its value."""
        return self._name

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<Variable {self._name}{' closed' if self._closed else ''}>"

    # -- the driver side -------------------------------------------------------------
    def _publish(self, state: State) -> None:
        """Record a new state; an error equal to the current error state is no change."""
        with self._cond:
            if self._closed:
                return
            current = self._state
            if (
                isinstance(state, VariableError)
                and isinstance(current, VariableError)
                and state.same_as(current)
            ):
                return
            self._state = state
            self._version += 1
            if isinstance(state, Snapshot):
                self._good = state
            self._wake_all()

    def _wake_all(self) -> None:
        """Wake sync and async waiters; called with the lock held."""
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    # -- decisions, always under the lock --------------------------------------------
    def _latest_or_none(self) -> Snapshot[T] | None:
        if self._closed:
            raise_closed()
        return self._good

    def _latest_timed_out(self) -> VariableError:
        state = self._state
        return state.fresh() if isinstance(state, VariableError) else _NO_VALUE.fresh()

    def _take_watch(self, cursor: int) -> tuple[int, State] | None:
        if self._closed:
            raise_closed()
        if self._version > cursor and self._state is not None:
            return self._version, self._state
        return None

    # -- sync face -------------------------------------------------------------------
    def latest(self, timeout: float | None = None) -> Snapshot[T]:
        """The last good snapshot, even if the newest state is an error.

        Before the first good value this blocks up to *timeout* seconds (None: forever,
        0: not at all) and then raises the last error (FAILED_PRECONDITION "no value
        yet" if there was none). Raises `ERR_CLOSED` once closed.
        """
        deadline = _deadline(timeout)
        with self._cond:
            while True:
                good = self._latest_or_none()
                if good is not None:
                    return good
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise self._latest_timed_out()
                self._cond.wait(remaining)

    def watch(self, timeout: float | None = None) -> Snapshot[T]:
        """Block until the state changed since the previous ``watch`` returned, then return
        the newest state (a snapshot, or raise the error of an error state).

        Intermediate states are dropped. On timeout raises DEADLINE_EXCEEDED without
        consuming a pending change. One cursor per variable: for several consumers use
        `changes`, which keeps its own.
        """
        deadline = _deadline(timeout)
        with self._cond:
            while True:
                taken = self._take_watch(self._watch_cursor)
                if taken is not None:
                    self._watch_cursor, state = taken
                    return _unwrap(state)
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise _deadline_error("watch", timeout)
                self._cond.wait(remaining)

    def check_health(self) -> None:
        """Never blocks: returns if a good value was seen and the variable is open,
        otherwise raises the reason (the last error, or `ERR_CLOSED`)."""
        with self._cond:
            if self._closed:
                raise_closed()
            if self._good is not None:
                return
            raise self._latest_timed_out()

    @overload
    def changes(self, *, errors: Literal["raise", "skip"] = "raise") -> Changes[Snapshot[T]]: ...
    @overload
    def changes(self, *, errors: Literal["yield"]) -> Changes[Snapshot[T] | VariableError]: ...
    def changes(self, *, errors: ErrorMode = "raise") -> Changes[Any]:
        """An iterator over states with its own cursor (the first item is the current state).

        *errors*: ``"raise"`` raises each error state from ``next`` (the iterator stays
        usable), ``"skip"`` yields good snapshots only, ``"yield"`` yields the
        `VariableError` objects as items. Iteration ends when the variable is closed.
        """
        return Changes(self, errors)

    def _next_change(
        self, cursor: int, errors: ErrorMode, deadline: float | None
    ) -> tuple[int, State]:
        with self._cond:
            while True:
                taken = self._take_watch(cursor)
                if taken is not None:
                    cursor = taken[0]
                    if errors != "skip" or isinstance(taken[1], Snapshot):
                        return taken
                    continue
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise _deadline_error("next change", None)
                self._cond.wait(remaining)

    def close(self) -> None:
        """Wake blocked callers (they raise `ERR_CLOSED`), stop the driver and wait for it.

        A second ``close`` raises `ERR_CLOSED` too.
        """
        with self._cond:
            if self._closed:
                raise_closed()
            self._closed = True
            self._wake_all()
        with self._stop_lock:
            self._driver.stop()

    def __enter__(self) -> Variable[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._closed:
            self.close()

    # -- async face ------------------------------------------------------------------
    def _park(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        self._async_waiters.append((loop, future))
        return future

    def _unpark(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        with self._cond, contextlib.suppress(ValueError):
            self._async_waiters.remove((loop, future))

    async def _sleep_on(self, future: asyncio.Future[None], deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            remaining = _remaining(deadline)
            if remaining is None:
                await future
            else:
                await asyncio.wait((future,), timeout=remaining)
        finally:
            if not future.done():
                future.cancel()
            self._unpark(loop, future)

    async def latest_async(self, timeout: float | None = None) -> Snapshot[T]:
        """`latest` for asyncio code: same rules, waits without blocking the loop."""
        deadline = _deadline(timeout)
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                good = self._latest_or_none()
                if good is not None:
                    return good
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise self._latest_timed_out()
                future = self._park(loop)
            await self._sleep_on(future, deadline)

    async def watch_async(self, timeout: float | None = None) -> Snapshot[T]:
        """`watch` for asyncio code (shares `watch`'s cursor)."""
        deadline = _deadline(timeout)
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                taken = self._take_watch(self._watch_cursor)
                if taken is not None:
                    self._watch_cursor, state = taken
                    return _unwrap(state)
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise _deadline_error("watch", timeout)
                future = self._park(loop)
            await self._sleep_on(future, deadline)

    async def _next_change_async(self, cursor: int, errors: ErrorMode) -> tuple[int, State]:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                taken = self._take_watch(cursor)
                if taken is not None:
                    cursor = taken[0]
                    if errors != "skip" or isinstance(taken[1], Snapshot):
                        return taken
                    continue
                future = self._park(loop)
            await self._sleep_on(future, None)

    @overload
    def changes_async(
        self, *, errors: Literal["raise", "skip"] = "raise"
    ) -> AsyncChanges[Snapshot[T]]: ...
    @overload
    def changes_async(
        self, *, errors: Literal["yield"]
    ) -> AsyncChanges[Snapshot[T] | VariableError]: ...
    def changes_async(self, *, errors: ErrorMode = "raise") -> AsyncChanges[Any]:
        """`changes` for ``async for``: own cursor, same *errors* modes, ends on close."""
        return AsyncChanges(self, errors)

    async def close_async(self) -> None:
        """`close` for asyncio code: waiters wake at once; the driver is stopped off-loop."""
        with self._cond:
            if self._closed:
                raise_closed()
            self._closed = True
            self._wake_all()

        def stop() -> None:
            with self._stop_lock:
                self._driver.stop()

        await asyncio.to_thread(stop)

    async def __aenter__(self) -> Variable[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._closed:
            await self.close_async()


def _unwrap(state: State) -> Snapshot[Any]:
    if isinstance(state, VariableError):
        raise state.fresh()
    return state


def _deadline_error(what: str, timeout: float | None) -> VariableError:
    after = f" after {timeout:g}s" if timeout is not None else ""
    return VariableError(ErrorCode.DEADLINE_EXCEEDED, f"{what} timed out{after}")


class Changes(Iterator[Item]):
    """Iterator over a variable's states with its own cursor; see `Variable.changes`."""

    def __init__(self, variable: Variable[Any], errors: ErrorMode) -> None:
        self._variable = variable
        self._errors = errors
        self._cursor = 0

    def __iter__(self) -> Changes[Item]:
        return self

    def __next__(self) -> Item:
        return self.next(None)

    def next(self, timeout: float | None) -> Item:
        """The next state, waiting at most *timeout* seconds (DEADLINE_EXCEEDED after)."""
        try:
            self._cursor, state = self._variable._next_change(
                self._cursor, self._errors, _deadline(timeout)
            )
        except VariableError as exc:
            if exc is ERR_CLOSED:
                raise StopIteration from None
            raise
        return _deliver(state, self._errors)  # type: ignore[no-any-return]


class AsyncChanges(AsyncIterator[Item]):
    """Async iterator over a variable's states with its own cursor; ends on close."""

    def __init__(self, variable: Variable[Any], errors: ErrorMode) -> None:
        self._variable = variable
        self._errors = errors
        self._cursor = 0

    def __aiter__(self) -> AsyncChanges[Item]:
        return self

    async def __anext__(self) -> Item:
        try:
            self._cursor, state = await self._variable._next_change_async(
                self._cursor, self._errors
            )
        except VariableError as exc:
            if exc is ERR_CLOSED:
                raise StopAsyncIteration from None
            raise
        return _deliver(state, self._errors)  # type: ignore[no-any-return]


def _deliver(state: State, errors: ErrorMode) -> Any:
    if isinstance(state, VariableError):
        if errors == "yield":
            return state.fresh()
        raise state.fresh()
    return state
