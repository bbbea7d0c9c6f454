"""File watching for the whole session: the watched root directories of every process,
followed by one ``watchfiles`` watcher, each change routed to the processes it matches.

Directories are watched, never single files: an editor's atomic save (write a temporary
file, rename it over the original) replaces the inode a file watch would hold, and the
watch goes silent after the first save. One watcher for all roots (rather than one per
root) keeps an idle session cheap: the watcher thread wakes every ``step_ms`` to look
for changes, so the wake-ups do not multiply with the number of processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from caproni_tasks.reloader.aio import cancel_and_wait
from caproni_tasks.reloader.globs import PathMatcher, fold_roots, nearest_existing

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
    """Owns the watcher; ``step_ms`` is the quiet time that ends a burst of changes (one
    restart per burst), ``debounce_ms`` the longest a burst is collected."""

    def __init__(
        self,
        *,
        step_ms: int = 10,
        debounce_ms: int = 1600,
        force_polling: bool | None = None,
        on_error: Callable[[list[Path], BaseException], None] | None = None,
    ) -> None:
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.on_error = on_error
        self._watchers: list[Watcher] = []
        self._roots: list[Path] = []
        self._root_names: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._live = asyncio.Event()
        self._reconfigure: asyncio.Handle | None = None

    @property
    def roots(self) -> list[Path]:
        return list(self._roots)

    def add(self, matcher: PathMatcher, callback: ChangeCallback) -> Watcher:
        watcher = Watcher(matcher, callback, list(matcher.roots))
        self._watchers.append(watcher)
        self._schedule()
        return watcher

    def remove(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)
            self._schedule()

    def _schedule(self) -> None:
        """Re-plan the watcher once per turn of the loop (processes arrive in batches)."""
        self._live.clear()
        if self._reconfigure is None:
            self._reconfigure = asyncio.get_running_loop().call_soon(self._apply)

    def _apply(self) -> None:
        self._reconfigure = None
        roots = self._planned_roots()
        if roots == self._roots and self._task is not None and not self._task.done():
            self._live.set()
            return
        self._roots = roots
        self._root_names = {str(root) for root in roots}
        self._halt()
        if roots:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._watch(roots, self._stop), name="watch files")
        else:
            self._live.set()

    def _planned_roots(self) -> list[Path]:
        """Each watcher's roots, or their nearest existing ancestors while they do not
        exist (a tree deleted by ``git checkout`` and created again), never above the
        watcher's own directory."""
        found: list[Path] = []
        for watcher in self._watchers:
            top = watcher.matcher.directory
            for root in watcher.roots:
                existing = nearest_existing(root)
                if existing == top or top in existing.parents:
                    found.append(existing)
        return fold_roots(found)

    def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self._stop = None

    async def wait_started(self, timeout: float = 5.0) -> None:
        """Wait until the watcher has its kernel watches in place (tests, benchmarks)."""
        async with asyncio.timeout(timeout):
            await self._live.wait()

    def _accepts(self, added: bool, path: str) -> bool:
        # A root's own event (its deletion) is let through: the watcher must then move
        # to an existing ancestor, or it would stay silent for good.
        if path in self._root_names or any(w.matcher.matches(path) for w in self._watchers):
            return True
        # A new directory: files written into it before the kernel watch on it was in
        # place raise no event of their own (``mkdir -p a/b && echo > a/b/f``); its
        # contents are looked at in `_dispatch`.
        return (
            added
            and any(w.matcher.inside_and_kept(path) for w in self._watchers)
            and os.path.isdir(path)
        )

    async def _watch(self, roots: list[Path], stop: asyncio.Event) -> None:
        from watchfiles import Change, awatch

        while not stop.is_set():
            try:
                changes = awatch(
                    *roots,
                    watch_filter=lambda change, path: self._accepts(change == Change.added, path),
                    step=self.step_ms,
                    debounce=self.debounce_ms,
                    stop_event=stop,
                    force_polling=self.force_polling,
                    ignore_permission_denied=True,
                    rust_timeout=60_000,
                )
                # awatch sets up its kernel watches synchronously in the first step of
                # its first iteration: one turn of the loop later the watcher is live.
                iterator = changes.__aiter__()
                next_batch = asyncio.ensure_future(iterator.__anext__())
                await asyncio.sleep(0)
                if not next_batch.done() or next_batch.exception() is None:
                    self._live.set()
                while True:
                    try:
                        batch = await next_batch
                    except StopAsyncIteration:
                        return
                    self._dispatch(
                        [path for _change, path in batch],
                        [path for change, path in batch if change == Change.added],
                    )
                    if not all(root.is_dir() for root in roots):
                        self._schedule()  # re-plan from the directories that exist now
                        return
                    next_batch = asyncio.ensure_future(iterator.__anext__())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. a root was deleted: report, then retry
                if self.on_error is not None:
                    self.on_error(roots, exc)
                log.debug("watching %s failed", roots, exc_info=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stop.wait()
                roots = [nearest_existing(r) for r in roots]

    def _dispatch(self, paths: list[str], added: list[str] | None = None) -> None:
        paths = _with_new_directories_contents(paths, added or [])
        for watcher in list(self._watchers):
            matched = [p for p in paths if watcher.matcher.matches(p)]
            if matched:
                watcher.callback(sorted(matched))

    async def close(self) -> None:
        if self._reconfigure is not None:
            self._reconfigure.cancel()
            self._reconfigure = None
        task = self._task
        self._halt()
        await cancel_and_wait(task)


#: Entries looked at in the new directories of one batch, at most (a huge checkout).
NEW_DIRECTORY_SCAN_LIMIT = 10_000


def _with_new_directories_contents(paths: list[str], added: list[str]) -> list[str]:
    """``paths`` plus the files inside the ``added`` paths that are directories (see
    `WatchHub._accepts`), up to `NEW_DIRECTORY_SCAN_LIMIT` entries."""
    directories = [p for p in added if os.path.isdir(p)]
    if not directories:
        return paths
    found = list(paths)
    budget = NEW_DIRECTORY_SCAN_LIMIT
    for directory in directories:
        for parent, _dirs, files in os.walk(directory):
            budget -= len(files) + 1
            found.extend(os.path.join(parent, name) for name in files)
            if budget <= 0:
                return found
    return found
