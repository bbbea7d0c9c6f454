"""Shared directory watchers on watchfiles: one per watched directory, reference-counted.

Files are never watched alone (an atomic save replaces the inode and a file watch goes
blind); the directory holding the path is watched, non-recursively, and events are
matched against exact paths each subscriber cares about. Many variables in one
directory share one watcher; releasing the last subscription stops it.

Every natively watched directory of the process shares one watchfiles notifier and one
thread (`NotifyHub`): watchfiles' loop wakes every ``step`` ms whatever happens, so one
loop per directory would cost CPU per directory while nothing changes.

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
#: How long to wait for a new polling watcher to confirm that its watch is in place.
START_TIMEOUT_S = 10.0
#: Rebuilds of the shared notifier before giving up when directories keep vanishing.
_BUILD_ATTEMPTS = 5

Callback = Callable[[], None]


def polling_forced() -> bool:
    """``WATCHFILES_FORCE_POLLING`` as watchfiles reads it (network filesystems, Docker
    bind mounts): set and not ``false``/``disable``/``disabled``."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return bool(value) and value.lower() not in {"false", "disable", "disabled"}


def _poll_delay_ms() -> int:
    """``WATCHFILES_POLL_DELAY_MS`` if set to a number, else `POLL_DELAY_MS`."""
    value = os.environ.get("WATCHFILES_POLL_DELAY_MS", "")
    return int(value) if value.isdecimal() and int(value) > 0 else POLL_DELAY_MS


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
    """One directory's watch, dispatching its events to subscriptions: natively through
    the shared `HUB`, or polled by a thread of its own (``force_polling``)."""

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
        """Begin watching and return once the watch is live (or raise why it is not).

        Native watches join the shared `HUB`; a polled directory gets its own thread.
        """
        if not self.force_polling:
            HUB.add(self)
            return
        self._thread = threading.Thread(
            target=self._run, name=f"runtimevar-poll:{self.path}", daemon=True
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
        """Stop watching; with *wait*, also wait for the thread (never from that thread)."""
        self.alive = False
        self._signal.stop.set()
        if not self.force_polling:
            HUB.remove(self, wait=wait)
            return
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        """The polling loop. watchfiles' poller compares modification times to the second,
        so an edit within the second of the previous one goes unseen: every quiet poll
        interval also makes the subscribers re-read (equal content is no new state)."""
        import watchfiles

        try:
            for batch in watchfiles.watch(
                self.path,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self._signal,
                rust_timeout=_poll_delay_ms(),
                yield_on_timeout=True,
                recursive=False,
                force_polling=True,
                poll_delay_ms=_poll_delay_ms(),
                raise_interrupt=False,
            ):
                if not batch:
                    _refresh_everyone([self])
                elif not self._dispatch(batch):
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
        if not self.force_polling:
            HUB.remove(self, wait=False)
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


class _HubSignal:
    """``stop_event`` of the hub's current ``watch`` call: set once the hub stops or has
    a new notifier to switch to. Plain attribute reads: it is polled every ``step``."""

    def __init__(self, hub: NotifyHub, notify: Any) -> None:
        self.hub = hub
        self.notify = notify

    def is_set(self) -> bool:
        return self.hub._notify is not self.notify


class NotifyHub:
    """One watchfiles notifier (``RustNotify``) over every natively watched directory,
    served by one thread that hands each event to the `DirectoryWatcher` it concerns.

    Adding or removing a directory builds a new notifier in the caller's thread (so the
    watch is live when `add` returns) and the thread switches to it. Events the old one
    held but had not returned are dropped by watchfiles on the switch, so everyone is
    asked to re-read afterwards (equal content is no new state).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, DirectoryWatcher] = {}
        self._notify: Any = None
        self._thread: threading.Thread | None = None
        # Members dropped because their directory vanished before a rebuild: the thread
        # makes their subscribers re-resolve (not the caller, who may hold locks).
        self._casualties: list[DirectoryWatcher] = []

    def members(self) -> list[str]:
        """The directories watched natively, for tests and diagnostics."""
        with self._lock:
            return sorted(self._members)

    def add(self, watcher: DirectoryWatcher) -> None:
        """Watch *watcher*'s directory from now on; OSError if it cannot be watched."""
        with self._lock:
            previous = self._members.get(watcher.path)
            members = {**self._members, watcher.path: watcher}
            notify = self._build(members, watcher)
            self._members, self._notify = members, notify
            if previous is not None and previous is not watcher:
                # A new directory at the same path, met before the old one's deletion
                # was seen: the old watcher's subscribers must re-resolve.
                previous.alive = False
                self._casualties.append(previous)
            if self._thread is None:  # None exactly when there was no notifier
                self._thread = threading.Thread(
                    target=self._run, name="runtimevar-watch", daemon=True
                )
                self._thread.start()

    def remove(self, watcher: DirectoryWatcher, *, wait: bool) -> None:
        """Stop watching *watcher*'s directory; the last one stops the thread (joined if
        *wait*, unless called from it)."""
        with self._lock:
            if self._members.get(watcher.path) is not watcher:
                return
            members = dict(self._members)
            del members[watcher.path]
            notify = None
            if members:
                try:
                    notify = self._build(members, None)
                except OSError as exc:  # keep the old notifier: one directory too many
                    log.debug("rebuilding the directory watch failed: %s", exc)
                    notify = self._notify
            self._members, self._notify = members, notify
            thread = None
            if notify is None:  # nothing left to watch: the thread ends by itself
                thread, self._thread = self._thread, None
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _build(self, members: dict[str, DirectoryWatcher], new: DirectoryWatcher | None) -> Any:
        """A notifier over *members* (pruned of vanished directories, except *new*, whose
        failure is raised); called with the lock held."""
        for _ in range(_BUILD_ATTEMPTS):
            try:
                return _rust_notify(sorted(members))
            except OSError:
                if new is not None and not os.path.isdir(new.path):
                    raise
                gone = [w for p, w in members.items() if w is not new and not os.path.isdir(p)]
                if not gone:
                    raise
                for watcher in gone:
                    watcher.alive = False
                    del members[watcher.path]
                    self._casualties.append(watcher)
                if not members:
                    return None
        raise OSError(f"directories kept vanishing while watching {sorted(members)}")

    def _run(self) -> None:
        me = threading.current_thread()
        current: Any = None
        try:
            while True:
                with self._lock:
                    notify = self._notify if self._thread is me else None
                    watchers = dict(self._members)
                    casualties, self._casualties = self._casualties, []
                for watcher in casualties:
                    watcher._die()
                if notify is None:  # stopped, or replaced by a newer thread
                    return
                if current is not notify:
                    if current is not None:
                        current.close()
                        _refresh_everyone(watchers.values())  # what it held is lost
                    current = notify
                try:
                    batch = notify.watch(DEBOUNCE_MS, STEP_MS, 0, _HubSignal(self, notify))
                except Exception as exc:  # the notifier broke: poll these directories
                    self._fail(notify, exc)
                    continue
                if isinstance(batch, set):
                    _deliver(batch, watchers)
        finally:
            if current is not None:
                current.close()

    def _fail(self, notify: Any, exc: Exception) -> None:
        log.warning("watching directories failed (%s); polling them instead", exc)
        with self._lock:
            if self._notify is not notify:
                return
            failed = list(self._members.values())
            self._members, self._notify, self._thread = {}, None, None
        for watcher in failed:
            REGISTRY.native_failed(watcher.path)
            watcher._die()


def _rust_notify(directories: list[str]) -> Any:
    """watchfiles' notifier over *directories*, non-recursive, live when it returns.

    ``RustNotify`` is what ``watchfiles.watch`` drives; a watchfiles whose notifier takes
    other arguments surfaces as OSError, so those directories are polled (public API)
    rather than not watched at all.
    """
    try:
        from watchfiles._rust_notify import RustNotify

        return RustNotify(directories, False, False, POLL_DELAY_MS, False, False)
    except (ImportError, TypeError) as exc:
        raise OSError(f"watchfiles notifier unavailable: {exc}") from exc


def _deliver(batch: set[tuple[int, str]], watchers: dict[str, DirectoryWatcher]) -> None:
    """Split *batch* by directory: an entry's events go to its directory's watcher, events
    on a watched directory itself to that directory's watcher."""
    per_directory: dict[str, set[tuple[int, str]]] = {}
    for change, path in batch:
        for directory in (os.path.dirname(path), path):
            if directory in watchers:
                per_directory.setdefault(directory, set()).add((change, path))
    for directory, events in per_directory.items():
        watcher = watchers[directory]
        if watcher.alive:
            watcher._dispatch(events)


def _refresh_everyone(watchers: Iterable[DirectoryWatcher]) -> None:
    callbacks: list[Callback] = []
    for watcher in watchers:
        if watcher.alive:
            with watcher.lock:
                callbacks.extend(s.callback for s in watcher.subscriptions)
    _call_all(callbacks)


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
        if directory in self._poll_only or polling_forced():
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


HUB = NotifyHub()
REGISTRY = WatcherRegistry()
atexit.register(REGISTRY.shutdown)
