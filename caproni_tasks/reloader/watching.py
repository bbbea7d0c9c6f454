"""File watching for the whole session: one watcher per watched root directory, shared
by every process whose globs need it, each change routed to the processes it matches.

Directories are watched, never single files: an editor's atomic save (write a temporary
file, rename it over the original) replaces the inode a file watch would hold, and the
watch goes silent after the first save.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from caproni_tasks.reloader.globs import PathMatcher

__all__ = ["WatchHub", "Watcher"]

log = logging.getLogger(__name__)

ChangeCallback = Callable[[list[str]], None]


@dataclass(eq=False)
class Watcher:
    """One process's interest: changed paths that ``matcher`` accepts go to ``callback``."""

    matcher: PathMatcher
    callback: ChangeCallback
    roots: list[Path] = field(default_factory=list)


class WatchHub:
    """Owns the ``watchfiles`` watchers; ``step_ms`` is the quiet time that ends a burst
    of changes (one restart per burst), ``debounce_ms`` the longest a burst may last."""

    def __init__(
        self,
        *,
        step_ms: int = 30,
        debounce_ms: int = 1600,
        force_polling: bool | None = None,
        on_error: Callable[[Path, BaseException], None] | None = None,
    ) -> None:
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.on_error = on_error
        self._subscribers: dict[Path, list[Watcher]] = {}
        self._tasks: dict[Path, asyncio.Task[None]] = {}
        self._ready: dict[Path, asyncio.Event] = {}
        self._stop: asyncio.Event | None = None

    def add(self, matcher: PathMatcher, callback: ChangeCallback) -> Watcher:
        watcher = Watcher(matcher, callback, list(matcher.roots))
        if self._stop is None:
            self._stop = asyncio.Event()
        for root in watcher.roots:
            self._subscribers.setdefault(root, []).append(watcher)
            if root not in self._tasks:
                self._ready[root] = asyncio.Event()
                self._tasks[root] = asyncio.create_task(self._watch(root), name=f"watch {root}")
        return watcher

    def remove(self, watcher: Watcher) -> None:
        for root in watcher.roots:
            subscribers = self._subscribers.get(root, [])
            if watcher in subscribers:
                subscribers.remove(watcher)
            if not subscribers and root in self._tasks:
                self._tasks.pop(root).cancel()
                self._subscribers.pop(root, None)
                self._ready.pop(root, None)

    async def wait_started(self, timeout: float = 5.0) -> None:
        """Wait until every watcher has set up its kernel watches (tests, benchmarks)."""
        events = list(self._ready.values())
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)

    def _accepts(self, root: Path, path: str) -> bool:
        return any(w.matcher.matches(path) for w in self._subscribers.get(root, ()))

    async def _watch(self, root: Path) -> None:
        from watchfiles import awatch

        assert self._stop is not None
        while not self._stop.is_set():
            try:
                changes = awatch(
                    root,
                    watch_filter=lambda _change, path: self._accepts(root, path),
                    step=self.step_ms,
                    debounce=self.debounce_ms,
                    stop_event=self._stop,
                    force_polling=self.force_polling,
                    ignore_permission_denied=True,
                    rust_timeout=60_000,
                )
                # awatch sets up its kernel watches synchronously in the first step of
                # its first iteration: one turn of the loop later the watcher is live.
                iterator = changes.__aiter__()
                next_batch = asyncio.ensure_future(iterator.__anext__())
                await asyncio.sleep(0)
                self._ready[root].set()
                while True:
                    try:
                        batch = await next_batch
                    except StopAsyncIteration:
                        return
                    self._dispatch(root, [path for _change, path in batch])
                    next_batch = asyncio.ensure_future(iterator.__anext__())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the root was deleted: report, retry
                if self.on_error is not None:
                    self.on_error(root, exc)
                log.debug("watcher on %s failed", root, exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)

    def _dispatch(self, root: Path, paths: list[str]) -> None:
        for watcher in list(self._subscribers.get(root, ())):
            matched = [p for p in paths if watcher.matcher.matches(p)]
            if matched:
                watcher.callback(sorted(matched))

    async def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
