"""Shared directory watchers on watchfiles: one per watched directory, reference-counted.

Files are never watched alone (an atomic save replaces the inode and a file watch goes
blind); the directory holding the path is watched, non-recursively, and events are
matched against exact paths each subscriber cares about. Many variables in one
directory share one watcher thread; releasing the last subscription stops it.

An event on the watched directory itself is either a change of its attributes
(everyone re-reads) or its deletion or move (the watch no longer looks at the path's
directory): then the watcher declares itself dead and asks every subscriber to
re-resolve, which subscribes afresh to whatever exists now.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("caproni_tasks.runtimevar")

#: Batching of watchfiles (milliseconds). ``step`` is both how often the idle watcher
#: wakes inside watchfiles and the quiet time that ends a batch; ``debounce`` caps a
#: batch under a stream of writes. Measured in bench/bench_runtimevar.py.
STEP_MS = 20
DEBOUNCE_MS = 60
#: Polling interval when native notifications cannot be used (set by the fallback).
POLL_DELAY_MS = 300
#: How long to wait for a new watcher to confirm that its watch is in place.
START_TIMEOUT_S = 10.0

Callback = Callable[[], None]
#: ``watchfiles.Change.deleted`` (kept here so importing this module stays light).
_DELETED = 3


class _StopSignal:
    """``stop_event`` for watchfiles that also reports when the watch is live.

    watchfiles polls ``is_set()`` only after the underlying notifier exists, so the first
    call proves that events from now on are captured.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.started = threading.Event()

    def is_set(self) -> bool:
        if not self.started.is_set():
            self.started.set()
        return self.stop.is_set()


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
        """Drop this interest; the last one stops the watcher (joined only if *wait*:
        joining from a refresh could wait on a thread that waits on that refresh)."""
        if not self.released:
            self.released = True
            REGISTRY.release(self, wait=wait)


@dataclass(eq=False)
class DirectoryWatcher:
    """A watchfiles watch on one directory, dispatching events to subscriptions."""

    path: str
    identity: tuple[int, int]
    force_polling: bool | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscriptions: list[Subscription] = field(default_factory=list)
    alive: bool = True
    _signal: _StopSignal = field(default_factory=_StopSignal)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def identity_matches(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def start(self) -> None:
        """Start the thread and return once the watch is live (or raise why it is not)."""
        self._thread = threading.Thread(
            target=self._run, name=f"runtimevar-watch:{self.path}", daemon=True
        )
        self._thread.start()
        self._signal.started.wait(START_TIMEOUT_S)
        if self._error is not None:
            self.alive = False
            raise self._error
        if not self._signal.started.is_set():
            self.stop()
            raise TimeoutError(f"watching {self.path} did not start")

    def stop(self, *, wait: bool = True) -> None:
        """Ask the thread to end; with *wait*, also wait for it (never from that thread)."""
        self.alive = False
        self._signal.stop.set()
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        import watchfiles

        try:
            for batch in watchfiles.watch(
                self.path,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self._signal,
                rust_timeout=0,
                recursive=False,
                force_polling=self.force_polling,
                poll_delay_ms=POLL_DELAY_MS,
                raise_interrupt=False,
            ):
                if not self._dispatch(batch):
                    break
        except BaseException as exc:  # reported to start() or logged; never kills the process
            if not self._signal.started.is_set():
                self._error = exc
                self._signal.started.set()
                return
            log.warning("watching %s failed: %s", self.path, exc)
            REGISTRY.native_failed(self.path)
            self._die()

    def _dispatch(self, batch: set[tuple[Any, str]]) -> bool:
        """Call the subscribers interested in *batch*; False once this watch is dead."""
        changed = {path for _, path in batch}
        # The directory itself deleted or moved away: the inotify watch is gone with it.
        # Its inode number may already name a new directory at the same path (ext4 reuses
        # them at once), so the event, not the identity, decides.
        if any(path == self.path and change == _DELETED for change, path in batch):
            self._die()
            return False
        # Any other event on the directory itself with the same inode is a change of its
        # attributes (chmod, touch): what it lets us read may have changed for everyone.
        everyone = self.path in changed
        if everyone and not self.identity_matches():
            self._die()
            return False
        with self.lock:
            callbacks = [
                s.callback
                for s in self.subscriptions
                if everyone or not s.paths.isdisjoint(changed)
            ]
        _call_all(callbacks)
        return not self._signal.stop.is_set()

    def _die(self) -> None:
        """The directory is gone or moved: stop, and make every subscriber re-resolve."""
        self.alive = False
        self._signal.stop.set()
        REGISTRY.forget(self)
        with self.lock:
            callbacks = [s.callback for s in self.subscriptions]
        _call_all(callbacks)


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
        # Directories whose native watch broke while running: polled from then on, so a
        # persistent failure cannot turn into a loop of restarts.
        self._poll_only: set[str] = set()

    def subscribe(self, directory: str, paths: frozenset[str], callback: Callback) -> Subscription:
        """Watch *directory* for events on *paths*; OSError if it cannot be watched."""
        st = os.stat(directory)
        identity = (st.st_dev, st.st_ino)
        with self._lock:
            watcher = self._watchers.get(directory)
            if watcher is None or not watcher.alive or watcher.identity != identity:
                watcher = self._start(directory, identity)
                self._watchers[directory] = watcher
            subscription = Subscription(watcher, paths, callback)
            with watcher.lock:
                watcher.subscriptions.append(subscription)
        return subscription

    def _start(self, directory: str, identity: tuple[int, int]) -> DirectoryWatcher:
        if directory in self._poll_only:
            watcher = DirectoryWatcher(directory, identity, force_polling=True)
            watcher.start()
            return watcher
        watcher = DirectoryWatcher(directory, identity)
        try:
            watcher.start()
        except FileNotFoundError:
            raise
        except OSError as exc:
            # Out of inotify instances/watches, or a filesystem without notifications:
            # polling still beats waiting for the retry interval.
            log.warning("cannot watch %s natively (%s); polling it instead", directory, exc)
            watcher = DirectoryWatcher(directory, identity, force_polling=True)
            watcher.start()
        return watcher

    def release(self, subscription: Subscription, *, wait: bool = False) -> None:
        watcher = subscription.watcher
        with self._lock:
            with watcher.lock:
                if subscription in watcher.subscriptions:
                    watcher.subscriptions.remove(subscription)
                idle = not watcher.subscriptions
            if idle and self._watchers.get(watcher.path) is watcher:
                del self._watchers[watcher.path]
        if idle:
            watcher.stop(wait=wait)

    def native_failed(self, directory: str) -> None:
        with self._lock:
            self._poll_only.add(directory)

    def forget(self, watcher: DirectoryWatcher) -> None:
        with self._lock:
            if self._watchers.get(watcher.path) is watcher:
                del self._watchers[watcher.path]

    def watched_directories(self) -> dict[str, int]:
        """Directory -> number of subscriptions, for tests and diagnostics."""
        with self._lock:
            return {path: len(w.subscriptions) for path, w in self._watchers.items()}

    def shutdown(self) -> None:
        """Stop every watcher (at interpreter exit, before daemon threads are frozen)."""
        with self._lock:
            watchers = list(self._watchers.values())
            self._watchers.clear()
        for watcher in watchers:
            watcher.stop()


REGISTRY = WatcherRegistry()
atexit.register(REGISTRY.shutdown)
