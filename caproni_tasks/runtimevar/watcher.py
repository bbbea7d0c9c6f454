"""Directory watches for runtime variables, on the package's one watching layer
(`caproni_tasks.fswatch`), shared and reference-counted.

Files are never watched alone (an atomic save replaces the inode and a file watch goes
blind); the directory holding the path is watched, non-recursively, and events are
matched against the exact paths each subscriber cares about. Many variables in one
directory share one watch; the layer shares one kernel watch per directory and one
thread for the whole process (the reloaders' watches included), so a change is
noticed once.

Timing: a subscriber re-reads as soon as a change is *finished* — the writer closed
the file, or a file was renamed onto the path (atomic save), deleted, re-pointed
(symlink) — rather than after a fixed quiet time. A write still in progress (data
written, file not closed yet, e.g. the truncation that starts an in-place overwrite)
is re-read only if no close follows within `SETTLE_S`, so an in-place overwrite is
not seen empty first (unless its writer pauses that long).

An event on the watched directory itself is either a change of its attributes
(everyone re-reads) or its deletion or move: then the watcher declares itself dead and
asks every subscriber to re-resolve, which subscribes afresh to whatever exists now.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from caproni_tasks.fswatch import LAYER, DirectoryWatch, Event, Flag, polling_forced
from caproni_tasks.runtimevar.scheduler import SCHEDULER, Timer

__all__ = ["REGISTRY", "SETTLE_S", "DirectoryWatcher", "Subscription", "polling_forced"]

log = logging.getLogger("caproni_tasks.runtimevar")

#: How long a write in progress (data written, no close yet) may go on before its
#: subscribers re-read anyway (a writer that keeps the file open, mmap).
SETTLE_S = 0.05

Callback = Callable[[], None]


@dataclass(eq=False)
class Subscription:
    """One subscriber's interest in a directory: exact paths and what to call."""

    watcher: DirectoryWatcher
    paths: frozenset[str]
    callback: Callback
    released: bool = False

    def valid(self) -> bool:
        """True while the watcher is alive and still watching the directory at its path."""
        return self.watcher.alive and self.watcher.identity_matches()

    def update(self, paths: frozenset[str]) -> None:
        with self.watcher.lock:
            self.paths = paths

    def release(self, *, wait: bool = False) -> None:
        """Drop this interest; the last one ends the directory's watch."""
        if not self.released:
            self.released = True
            REGISTRY.release(self)


@dataclass(eq=False)
class DirectoryWatcher:
    """One directory's watch on the layer, dispatching its events to subscriptions."""

    path: str
    identity: tuple[int, int]
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscriptions: list[Subscription] = field(default_factory=list)
    alive: bool = True
    watch: DirectoryWatch | None = None
    #: Paths written to but not closed yet, and the timer that re-reads them anyway.
    _unsettled: set[str] = field(default_factory=set)
    _settle: Timer | None = None

    @property
    def polled(self) -> bool:
        return self.watch is not None and self.watch.polled

    def identity_matches(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def start(self) -> None:
        """Begin watching; live when this returns (OSError if the path is no directory)."""
        self.watch = LAYER.watch(self.path, self._on_events)

    def stop(self) -> None:
        self.alive = False
        with self.lock:
            settle, self._settle = self._settle, None
        if settle is not None:
            settle.cancel()
        if self.watch is not None:
            self.watch.close()

    def _on_events(self, events: list[Event]) -> None:
        """Called on the layer's thread with one batch of this directory's events."""
        if not self.alive:
            return
        everyone = False
        changed: set[str] = set()
        for event in events:
            if event.flags & Flag.GONE:
                # Deleted or moved away: the watch no longer looks at the path. Its inode
                # number may already name a new directory there (ext4 reuses them at
                # once), so the event, not the identity, decides.
                self._die()
                return
            if event.flags & Flag.OVERFLOW:
                everyone = True
            elif event.path == self.path:
                # Its attributes (chmod, touch): what it lets us read may have changed.
                if not self.identity_matches():
                    self._die()
                    return
                everyone = True
            elif _in_progress(event):
                changed.discard(event.path)
                with self.lock:
                    self._unsettled.add(event.path)
            else:
                changed.add(event.path)
                with self.lock:
                    self._unsettled.discard(event.path)
        with self.lock:
            callbacks = [
                s.callback
                for s in self.subscriptions
                if everyone or not s.paths.isdisjoint(changed)
            ]
            if self._unsettled and self._settle is None:
                self._settle = SCHEDULER.call_later(SETTLE_S, self._settled)
        _call_all(callbacks)

    def _settled(self) -> None:
        """A write that never closed (or closed unseen): re-read what it touched."""
        with self.lock:
            self._settle = None
            unsettled, self._unsettled = self._unsettled, set()
            callbacks = [
                s.callback for s in self.subscriptions if not s.paths.isdisjoint(unsettled)
            ]
        if self.alive:
            _call_all(callbacks)

    def _die(self) -> None:
        """The directory is gone or moved: stop, and make every subscriber re-resolve."""
        self.stop()
        REGISTRY.forget(self)
        with self.lock:
            callbacks = [s.callback for s in self.subscriptions]
        _call_all(callbacks)


def _in_progress(event: Event) -> bool:
    """A write that has begun but not finished: data written (or a regular file created)
    with no close in the same event."""
    flags = event.flags
    if flags & (Flag.CLOSE_WRITE | Flag.MOVED_TO | Flag.DELETED | Flag.MOVED_FROM):
        return False
    if flags & Flag.MODIFIED:
        return True
    if flags & Flag.CREATED and not flags & Flag.IS_DIR:
        return os.path.isfile(event.path) and not os.path.islink(event.path)
    return False


def _call_all(callbacks: Iterable[Callback]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # one broken subscriber must not starve the others
            log.exception("runtime variable refresh failed")


class WatcherRegistry:
    """Process-wide map of directory -> live watcher, with reference counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[str, DirectoryWatcher] = {}

    def subscribe(self, directory: str, paths: frozenset[str], callback: Callback) -> Subscription:
        """Watch *directory* for events on *paths*; OSError if it cannot be watched."""
        st = os.stat(directory)
        identity = (st.st_dev, st.st_ino)
        with self._lock:
            watcher = self._watchers.get(directory)
            if watcher is None or not watcher.alive or watcher.identity != identity:
                previous = watcher
                watcher = DirectoryWatcher(directory, identity)
                watcher.start()
                self._watchers[directory] = watcher
                if previous is not None and previous.alive:
                    # A new directory at the same path, met before the old one's deletion
                    # was seen: the old watcher's subscribers must re-resolve.
                    # (on the timer thread: the caller may hold a subscriber's lock).
                    SCHEDULER.call_later(0, previous._die)
            subscription = Subscription(watcher, paths, callback)
            with watcher.lock:
                watcher.subscriptions.append(subscription)
        return subscription

    def release(self, subscription: Subscription) -> None:
        watcher = subscription.watcher
        with self._lock:
            with watcher.lock:
                if subscription in watcher.subscriptions:
                    watcher.subscriptions.remove(subscription)
                idle = not watcher.subscriptions
            if idle and self._watchers.get(watcher.path) is watcher:
                del self._watchers[watcher.path]
        if idle:
            watcher.stop()

    def forget(self, watcher: DirectoryWatcher) -> None:
        with self._lock:
            if self._watchers.get(watcher.path) is watcher:
                del self._watchers[watcher.path]

    def watched_directories(self) -> dict[str, int]:
        """Directory -> number of subscriptions, for tests and diagnostics."""
        with self._lock:
            return {path: len(w.subscriptions) for path, w in self._watchers.items()}

    def native_directories(self) -> list[str]:
        """Directories watched by the kernel (not polled), for tests and diagnostics."""
        with self._lock:
            return sorted(p for p, w in self._watchers.items() if w.alive and not w.polled)

    def shutdown(self) -> None:
        """Stop every watcher (at interpreter exit, before daemon threads are frozen)."""
        with self._lock:
            watchers = list(self._watchers.values())
            self._watchers.clear()
        for watcher in watchers:
            watcher.stop()


REGISTRY = WatcherRegistry()
atexit.register(REGISTRY.shutdown)
