"""File watching for the whole session, on the package's one watching layer
(`caproni_tasks.fswatch`): each change routed to the processes whose globs match it.

What is watched scales with what the globs can match, not with the tree: starting from
each process's directory, only directories a watch glob can match something in are
watched, and ignored directories (``node_modules``, ``.venv``, … and the process's own
``ignore``) are never entered. A directory created later is watched as soon as its
creation is seen, and the files already in it count as changed (``mkdir -p a/b && echo
> a/b/f`` writes before the new watch is in place). A process directory that does not
exist yet is waited for from its nearest existing ancestor.

When a burst of changes ends: a restart happens as soon as a save is visibly finished
— a file that existed was closed after writing, or a file was renamed onto its name
(the last step of an atomic save) — and no other matched file is still being written.
Anything else (a new file, which may be a temporary one about to be renamed; a
deletion, which may be the first half of a rename-and-rewrite save; a write whose close
has not come) ends the burst after ``step_ms`` without further events, and a burst
never lasts longer than ``debounce_ms``. Changes seen while a restart is under way are
part of it: one restart per save.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from caproni_tasks.fswatch import LAYER, DirectoryWatch, Event, Flag
from caproni_tasks.reloader.globs import PathMatcher

__all__ = ["WatchHub", "Watcher"]

ChangeCallback = Callable[[list[str]], None]

#: Entries looked at in the new directories of one batch, at most (a huge checkout).
NEW_DIRECTORY_SCAN_LIMIT = 10_000


@dataclass(eq=False)
class Watcher:
    """One process's interest: changed paths that ``matcher`` accepts go to ``callback``,
    one call per burst."""

    matcher: PathMatcher
    callback: ChangeCallback
    paths: set[str] = field(default_factory=set)
    fresh: set[str] = field(default_factory=set)  # created during this burst
    writing: set[str] = field(default_factory=set)  # written, not closed yet
    started: float = 0.0
    timer: asyncio.TimerHandle | None = None


class WatchHub:
    """Owns the session's directory watches; ``step_ms`` is the quiet time that ends a
    burst whose end is not visible, ``debounce_ms`` the longest a burst is collected.
    ``on_notice`` hears, once, that the kernel's watch limit was reached."""

    def __init__(
        self,
        *,
        step_ms: int = 20,
        debounce_ms: int = 1600,
        force_polling: bool | None = None,
        on_error: Callable[[list[Path], BaseException], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.force_polling = bool(force_polling)
        self.on_error = on_error
        self.on_notice = on_notice
        self._watchers: list[Watcher] = []
        self._dirs: dict[str, DirectoryWatch] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live = asyncio.Event()
        self._reconfigure: asyncio.Handle | None = None
        self._listening = False

    @property
    def directories(self) -> list[str]:
        """The directories watched now (the layer's own accounting: one watch each)."""
        return sorted(self._dirs)

    def add(self, matcher: PathMatcher, callback: ChangeCallback) -> Watcher:
        watcher = Watcher(matcher, callback)
        self._watchers.append(watcher)
        self._schedule()
        return watcher

    def remove(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)
            if watcher.timer is not None:
                watcher.timer.cancel()
            self._schedule()

    async def wait_started(self, timeout: float = 5.0) -> None:
        """Wait until the watches are in place (tests, benchmarks)."""
        async with asyncio.timeout(timeout):
            await self._live.wait()

    # -- planning -------------------------------------------------------------------

    def _schedule(self) -> None:
        """Re-plan the watches once per turn of the loop (processes arrive in batches)."""
        self._live.clear()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if not self._listening and self.on_notice is not None:
            LAYER.notice_listeners.append(self._notice)
            self._listening = True
        if self._reconfigure is None:
            self._reconfigure = self._loop.call_soon(self._apply)

    def _notice(self, message: str) -> None:  # any thread
        if self._loop is not None and self.on_notice is not None:
            self._loop.call_soon_threadsafe(self.on_notice, message)

    def _apply(self) -> None:
        self._reconfigure = None
        wanted: set[str] = set()
        for watcher in self._watchers:
            wanted.update(self._plan(watcher.matcher))
        with LAYER.batch():  # one rebuild of a notifier for the whole change
            for path in [p for p in self._dirs if p not in wanted]:
                self._dirs.pop(path).close()
            self._watch_all(sorted(wanted, key=len))
        self._live.set()

    def _plan(self, matcher: PathMatcher) -> set[str]:
        """The directories ``matcher`` needs watched now."""
        top = str(matcher.directory)
        if not os.path.isdir(top):
            # Not there yet (a repository not cloned, a tree removed by git checkout):
            # its nearest existing ancestor will see it appear.
            parent = Path(top).parent
            while not parent.is_dir() and parent != parent.parent:
                parent = parent.parent
            return {str(parent)}
        return set(_walk(top, matcher.wants_directory))

    def _watch_all(self, paths: list[str]) -> None:
        failed: list[Path] = []
        error: BaseException | None = None
        with LAYER.batch():
            for path in paths:
                if path in self._dirs:
                    continue
                try:
                    self._dirs[path] = LAYER.watch(path, self._from_layer, poll=self.force_polling)
                except FileNotFoundError:
                    continue  # gone since it was listed: its parent's event says so
                except OSError as exc:
                    failed.append(Path(path))
                    error = exc
        if error is not None and self.on_error is not None:
            self.on_error(failed, error)

    def _wanted_by_anyone(self, path: str) -> bool:
        return any(w.matcher.wants_directory(path) for w in self._watchers)

    # -- events -----------------------------------------------------------------------

    def _from_layer(self, events: list[Event]) -> None:  # the layer's thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_events, events)

    def _on_events(self, events: list[Event]) -> None:
        replan = False
        extra: list[Event] = []
        for event in events:
            flags = event.flags
            if flags & Flag.GONE:
                watch = self._dirs.pop(event.path, None)
                if watch is not None:
                    watch.close()
                replan = True
            elif flags & Flag.OVERFLOW:
                replan = True
                extra.extend(Event(w, Flag.MODIFIED) for w in self._dirs)
            elif flags & Flag.IS_DIR and flags & (Flag.CREATED | Flag.MOVED_TO):
                if self._wanted_by_anyone(event.path):
                    extra.extend(self._new_directory(event.path))
                elif any(
                    event.path == str(w.matcher.directory)
                    or Path(event.path) in w.matcher.directory.parents
                    for w in self._watchers
                ):
                    replan = True  # on the way to a process directory that was missing
        if replan and self._reconfigure is None and self._loop is not None:
            self._reconfigure = self._loop.call_soon(self._apply)
        for watcher in list(self._watchers):
            matched = [e for e in (*events, *extra) if watcher.matcher.matches(e.path)]
            if matched:
                self._feed(watcher, matched)

    def _new_directory(self, path: str) -> list[Event]:
        """Watch a new directory's wanted subtree; its files count as changed."""
        found: list[Event] = []
        wanted = _walk(path, self._wanted_by_anyone)
        self._watch_all(wanted)
        budget = NEW_DIRECTORY_SCAN_LIMIT
        for directory in wanted:
            try:
                with os.scandir(directory) as entries:
                    names = [e.path for e in entries if not e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            found.extend(Event(name, Flag.CREATED | Flag.CLOSE_WRITE) for name in names)
            budget -= len(names) + 1
            if budget <= 0:
                break
        return found

    def _feed(self, watcher: Watcher, events: list[Event]) -> None:
        """Add a batch to the watcher's burst; end the burst now if the save is over."""
        if not watcher.paths:
            watcher.started = time.monotonic()
        finished = False
        for event in events:
            path, flags = event.path, event.flags
            watcher.paths.add(path)
            if flags & Flag.IS_DIR:
                continue
            if flags & Flag.CREATED:
                watcher.fresh.add(path)
            if flags & Flag.MODIFIED:
                watcher.writing.add(path)
            if flags & (Flag.CLOSE_WRITE | Flag.DELETED | Flag.MOVED_FROM):
                watcher.writing.discard(path)
            if flags & Flag.CREATED and not flags & Flag.CLOSE_WRITE:
                watcher.writing.add(path)
            if flags & Flag.MOVED_TO or (flags & Flag.CLOSE_WRITE and path not in watcher.fresh):
                finished = True
        if finished and not watcher.writing:
            self._fire(watcher)
            return
        if watcher.timer is not None:
            watcher.timer.cancel()
        assert self._loop is not None
        left = self.debounce_ms / 1000 - (time.monotonic() - watcher.started)
        delay = max(0.0, min(self.step_ms / 1000, left))
        watcher.timer = self._loop.call_later(delay, self._fire, watcher)

    def _fire(self, watcher: Watcher) -> None:
        if watcher.timer is not None:
            watcher.timer.cancel()
            watcher.timer = None
        paths = sorted(watcher.paths)
        watcher.paths, watcher.fresh, watcher.writing = set(), set(), set()
        if paths and watcher in self._watchers:
            watcher.callback(paths)

    async def close(self) -> None:
        if self._reconfigure is not None:
            self._reconfigure.cancel()
            self._reconfigure = None
        for watcher in self._watchers:
            if watcher.timer is not None:
                watcher.timer.cancel()
        with LAYER.batch():
            for watch in self._dirs.values():
                watch.close()
        self._dirs.clear()
        if self._listening:
            LAYER.notice_listeners.remove(self._notice)
            self._listening = False


def _walk(top: str, wanted: Callable[[str], bool]) -> list[str]:
    """``top`` and the directories below it that ``wanted`` accepts, never entering one
    it refuses (nor following symbolic links)."""
    found: list[str] = []
    pending = [top]
    while pending:
        directory = pending.pop()
        found.append(directory)
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False) and wanted(entry.path):
                        pending.append(entry.path)
        except OSError:
            continue
    return found
