"""The one file-watching layer of the package: reloaders and runtime variables share it.

A watch is on one directory, non-recursively (recursion is the caller's choice of
directories, so ignored trees never cost a kernel watch). Many watches of one
directory share one native watch; every watch of the process shares one notifier and
one thread, which hands each watch the events of its directory, in batches.

Backends, chosen in one place (`backend`):

``inotify`` (Linux): three libc functions through ctypes. The thread blocks in
``select`` until the kernel has events (no wake-ups while nothing changes). Events say
what happened, finer than "modified": a write that was *finished* (``CLOSE_WRITE``:
the writer closed the file) or a rename onto a name (``MOVED_TO``, the last step of an
atomic save) lets a reloader restart at once instead of waiting for a quiet period to
be sure the save is over.

``notify`` (where inotify is not available: macOS, the BSDs, Windows): watchfiles'
notifier, ``watchfiles._rust_notify.RustNotify`` (FSEvents on macOS, kqueue on the
BSDs, ReadDirectoryChangesW on Windows), with ``recursive=False`` over exactly the
directories being watched. Its events are only *added*, *modified* and *deleted*
(mapped to `Flag.CREATED`, `Flag.MODIFIED`, `Flag.DELETED`, never ``CLOSE_WRITE``), so
the end of a save is found with the quiet period the layer's users already apply to
writes that are not visibly finished. Its ``watch`` call blocks, sleeping ``step`` ms
between looks at what its own thread collected: the layer's thread runs it with a stop
event (shutdown stays prompt) and a short timeout (a new set of directories is taken up
within `NOTIFY_TIMEOUT_MS`). That look every `NOTIFY_STEP_MS` is a timer in Rust with
the GIL released, not a scan of directories (idle CPU in bench/README.md).

Why inotify first where it exists: besides telling a finished write from a partial one,
an inotify watch is added and removed one directory at a time, while a notifier's set
of directories is fixed when it is made: every change of the set (a new directory
appears, a variable in a new directory) builds a new notifier over the whole set. The
old one keeps reporting until the new one has taken over, and what both saw is
reported once (a change the first already reported is dropped from the second when
the file is as it was then). Callers that change many directories at once wrap them in
`WatchLayer.batch` so the notifier is built once.

When the kernel refuses an inotify watch because ``fs.inotify.max_user_watches`` (or,
for the instance itself, ``fs.inotify.max_user_instances``) is reached, the layer says
so once, names the setting to raise, and polls the directories it could not watch (stat
of their entries every `poll_interval` seconds). A directory the notifier refuses is
polled too, and everything is polled when no native backend can be had (watchfiles'
core fails to load or to start) or when ``WATCHFILES_FORCE_POLLING`` is set (network
filesystems, Docker bind mounts). ``CAPRONI_TASKS_WATCH_BACKEND=inotify|notify|poll``
picks the backend (tests run the ``notify`` backend on Linux this way).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import select
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Any, Literal, cast

__all__ = [
    "BACKEND_ENV",
    "LAYER",
    "Backend",
    "DirectoryWatch",
    "Event",
    "Flag",
    "WatchLayer",
    "backend",
    "polling_forced",
]

log = logging.getLogger("caproni_tasks.fswatch")

#: Default polling interval (seconds) for directories the kernel cannot watch.
POLL_INTERVAL = 0.3

Backend = Literal["inotify", "notify", "poll"]
BACKENDS: tuple[Backend, ...] = ("inotify", "notify", "poll")
#: The environment variable that picks a backend (tests, diagnostics).
BACKEND_ENV = "CAPRONI_TASKS_WATCH_BACKEND"

#: The notifier's look at what it collected, every this many ms (also the quiet time
#: that ends one of its batches: an event reaches the layer 1-2 steps after it happened).
NOTIFY_STEP_MS = 20
#: The longest one batch of the notifier is collected while events keep coming.
NOTIFY_DEBOUNCE_MS = 200
#: The longest the layer's thread stays in one call of the notifier without events (a
#: rebuilt notifier is taken up, polled directories are looked at, at least this often).
NOTIFY_TIMEOUT_MS = 100


class Flag(IntFlag):
    """What happened to an entry of a watched directory (several may be set)."""

    CREATED = 1
    MODIFIED = 2  # data written; the writer may still be writing
    CLOSE_WRITE = 4  # a writer closed the file: its write is finished
    ATTRIB = 8  # permissions, timestamps, owner, link count
    DELETED = 16
    MOVED_FROM = 32
    MOVED_TO = 64
    IS_DIR = 128  # the entry is a directory
    GONE = 256  # the watched directory itself was deleted or moved: the watch is over
    OVERFLOW = 512  # the kernel dropped events: look at everything again


@dataclass(frozen=True)
class Event:
    """``path`` is the entry's full path (the directory's own path for ``GONE`` and for
    ``ATTRIB`` of the directory itself)."""

    path: str
    flags: Flag


Callback = Callable[[list[Event]], None]
NoticeCallback = Callable[[str], None]

# inotify(7)
_IN_MODIFY = 0x2
_IN_ATTRIB = 0x4
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_IN_EXCL_UNLINK = 0x04000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
    | _IN_EXCL_UNLINK
)
_FLAGS = (
    (_IN_CREATE, Flag.CREATED),
    (_IN_MODIFY, Flag.MODIFIED),
    (_IN_CLOSE_WRITE, Flag.CLOSE_WRITE),
    (_IN_ATTRIB, Flag.ATTRIB),
    (_IN_DELETE, Flag.DELETED),
    (_IN_MOVED_FROM, Flag.MOVED_FROM),
    (_IN_MOVED_TO, Flag.MOVED_TO),
    (_IN_ISDIR, Flag.IS_DIR),
)
_HEADER = struct.Struct("iIII")
_WARNED_ENV: set[str] = set()

# watchfiles.Change
_ADDED, _MODIFIED, _DELETED = 1, 2, 3
Changes = set[tuple[int, str]]


def polling_forced() -> bool:
    """``WATCHFILES_FORCE_POLLING`` set and not ``false``/``disable``/``disabled`` (the
    variable watchfiles users already know)."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return bool(value) and value.lower() not in {"false", "disable", "disabled"}


def backend() -> Backend:
    """The backend new watches use, decided here and nowhere else: ``poll`` when
    `polling_forced`, else ``CAPRONI_TASKS_WATCH_BACKEND`` when it names one, else
    ``inotify`` on Linux and ``notify`` (watchfiles' notifier) elsewhere."""
    if polling_forced():
        return "poll"
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower()
    for name in BACKENDS:
        if chosen == name:
            return name
    if chosen and chosen not in _WARNED_ENV:
        _WARNED_ENV.add(chosen)
        log.warning("%s=%s is not one of %s: ignored", BACKEND_ENV, chosen, "|".join(BACKENDS))
    return "inotify" if sys.platform.startswith("linux") else "notify"


def poll_interval() -> float:
    """``WATCHFILES_POLL_DELAY_MS`` if set to a positive number, else `POLL_INTERVAL`."""
    value = os.environ.get("WATCHFILES_POLL_DELAY_MS", "")
    return int(value) / 1000 if value.isdecimal() and int(value) > 0 else POLL_INTERVAL


class Inotify:
    """The three inotify calls, through libc."""

    def __init__(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self._init = libc.inotify_init1
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._errno = ctypes.get_errno
        fd = int(self._init(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            code = self._errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd = fd

    def add_watch(self, path: str) -> int:
        wd = int(self._add(self.fd, os.fsencode(path), _MASK))
        if wd < 0:
            code = self._errno()
            raise OSError(code, os.strerror(code), path)
        return wd

    def rm_watch(self, wd: int) -> None:
        self._rm(self.fd, wd)

    def read(self) -> list[tuple[int, int, str]]:
        """Pending events as (wd, mask, name); [] when there are none."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        events = []
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            start = offset + _HEADER.size
            name = os.fsdecode(data[start : start + length].rstrip(b"\0"))
            events.append((wd, mask, name))
            offset = start + length
        return events

    def close(self) -> None:
        os.close(self.fd)


class Notifier:
    """watchfiles' notifier over a fixed set of directories, non-recursively. Making
    one starts its own thread; the directories are watched when the constructor
    returns. OSError (FileNotFoundError, PermissionError, …) or RuntimeError when a
    directory is refused or the notifier cannot start; ImportError without its core."""

    def __init__(self, paths: frozenset[str]) -> None:
        from watchfiles._rust_notify import RustNotify

        self.paths = paths
        # watch_paths, debug, force_polling, poll_delay_ms, recursive,
        # ignore_permission_denied: a refused directory must be known (it is polled).
        self._rust: Any = RustNotify(sorted(paths), False, False, 0, False, False)
        self.retired = False  # a newer notifier has taken over its directories

    def wait(self, timeout_ms: int, stop: threading.Event | None) -> Changes | None:
        """The next batch of (change, path), or None after ``timeout_ms`` without
        changes or once ``stop`` is set."""
        result = self._rust.watch(NOTIFY_DEBOUNCE_MS, NOTIFY_STEP_MS, max(1, timeout_ms), stop)
        return cast(Changes, result) if isinstance(result, set) else None

    def close(self) -> None:
        self._rust.close()


@dataclass(eq=False)
class DirectoryWatch:
    """One watcher's interest in one directory; `close` ends it."""

    layer: WatchLayer
    path: str
    callback: Callback
    polled: bool = False
    wd: int | None = None  # on inotify
    notified: bool = False  # on the notifier
    closed: bool = False
    #: Polled directories: entry name -> (inode, size, mtime_ns, mode). Every
    #: directory: its identity (device, inode) when the watch began.
    snapshot: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    identity: tuple[int, int] | None = None

    def close(self) -> None:
        self.layer.unwatch(self)


class WatchLayer:
    """Process-wide directory watches on one native notifier and one thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inotify: Inotify | None = None
        self._native_failed = False  # no native backend here, or none left: poll all
        self._by_wd: dict[int, list[DirectoryWatch]] = {}
        # The notify backend: watches by directory, the notifier over exactly those
        # directories (once rebuilt), older ones still to be drained by the thread, and
        # what the older ones reported after the newer one started (reported once).
        self._by_path: dict[str, list[DirectoryWatch]] = {}
        self._real: dict[str, set[str]] = {}  # real path -> watched paths naming it
        self._notifier: Notifier | None = None
        self._retiring: list[Notifier] = []
        self._overlap: dict[str, tuple[int, int, int, int] | None] = {}
        self._batch = 0
        self._pending: list[tuple[DirectoryWatch, Event]] = []
        self._polled: list[DirectoryWatch] = []
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._wake_r, self._wake_w = -1, -1
        self._warned: set[str] = set()
        self.notice_listeners: list[NoticeCallback] = []

    # -- accounting (tests, diagnostics) -----------------------------------------------

    def kernel_watches(self) -> int:
        """Native watches held (one per watched directory)."""
        with self._lock:
            return len(self._by_wd) + len(self._by_path)

    def native_directories(self) -> list[str]:
        with self._lock:
            found = {w.path for ws in self._by_wd.values() for w in ws}
            return sorted(found | set(self._by_path))

    def polled_directories(self) -> list[str]:
        with self._lock:
            return sorted({w.path for w in self._polled})

    def native_backend(self) -> Backend | None:
        """The native backend holding watches now (None: none does)."""
        with self._lock:
            if self._by_wd:
                return "inotify"
            return "notify" if self._by_path else None

    # -- watching ---------------------------------------------------------------------------

    def watch(self, path: str, callback: Callback, *, poll: bool = False) -> DirectoryWatch:
        """Watch the directory ``path`` (live when this returns, or when the enclosing
        `batch` ends). FileNotFoundError or NotADirectoryError when it is not a
        directory; a directory the native backend cannot watch is polled. ``poll``
        forces polling (as does ``WATCHFILES_FORCE_POLLING``)."""
        watch = DirectoryWatch(self, path, callback)
        kind: Backend = "poll" if poll else backend()
        with self._lock:
            if kind != "poll" and self._native_failed:
                kind = "poll"
            # One native backend at a time: the one holding watches keeps new ones.
            if kind == "notify" and self._by_wd:
                kind = "inotify"
            elif kind == "inotify" and self._by_path:
                kind = "notify"
            if kind == "inotify":
                kind = self._watch_inotify(watch)
            elif kind == "notify":
                self._watch_notify(watch)
            if kind == "poll":
                watch.polled = True
                _take_snapshot(watch)  # raises FileNotFoundError/NotADirectoryError
                self._polled.append(watch)
            self._ensure_thread()
        return watch

    def _watch_inotify(self, watch: DirectoryWatch) -> Backend:
        inotify = self._native()
        if inotify is None:
            return "poll"
        try:
            watch.wd = inotify.add_watch(watch.path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise _not_a_directory(exc, watch.path) from None
            self._refused(exc, watch.path)
            return "poll"
        self._by_wd.setdefault(watch.wd, []).append(watch)
        return "inotify"

    def _watch_notify(self, watch: DirectoryWatch) -> None:
        """On the notifier (rebuilt now, or at the end of the batch); polled if it
        refuses the directory."""
        _take_identity(watch)  # raises FileNotFoundError/NotADirectoryError
        sharing = self._by_path.setdefault(watch.path, [])
        sharing.append(watch)
        watch.notified = True
        if len(sharing) > 1:
            return
        self._real.setdefault(os.path.realpath(watch.path), set()).add(watch.path)
        if self._batch:
            return
        self._rebuild()
        if not watch.notified and not watch.polled:  # gone meanwhile
            self._pending = [(w, e) for w, e in self._pending if w is not watch]
            raise FileNotFoundError(errno.ENOENT, "no such directory", watch.path)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many watches begun or ended at once: with the notify backend, its notifier
        is rebuilt once, at the end (watches begun inside are live from then on; a
        directory refused then is polled, one gone by then reports `Flag.GONE`). No
        effect on inotify, whose watches are added one by one."""
        with self._lock:
            self._batch += 1
        try:
            yield
        finally:
            with self._lock:
                self._batch -= 1
                if not self._batch:
                    self._rebuild()

    def unwatch(self, watch: DirectoryWatch) -> None:
        """End ``watch`` (no callback after this returns, except one already running)."""
        thread = None
        with self._lock:
            if watch.closed:
                return
            watch.closed = True
            if watch.polled:
                if watch in self._polled:
                    self._polled.remove(watch)
            elif watch.wd is not None:
                sharing = self._by_wd.get(watch.wd, [])
                if watch in sharing:
                    sharing.remove(watch)
                if not sharing and watch.wd in self._by_wd:
                    del self._by_wd[watch.wd]
                    if self._inotify is not None:
                        self._inotify.rm_watch(watch.wd)
            elif watch.notified:
                self._drop_notified(watch)
                if not self._batch:
                    self._rebuild()
            if not self._by_wd and not self._by_path and not self._polled:
                thread = self._stop_thread()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _native(self) -> Inotify | None:
        if self._inotify is None and not self._native_failed:
            try:
                self._inotify = Inotify()
            except (OSError, AttributeError) as exc:
                self._native_failed = True
                if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
                    self._notice(
                        "instances",
                        "inotify instance limit reached (fs.inotify.max_user_instances = "
                        f"{_sysctl('max_user_instances')}): polling watched directories "
                        "instead; raise it, e.g. sudo sysctl fs.inotify.max_user_instances=1024",
                    )
                else:
                    log.debug("inotify unavailable (%s): polling", exc)
        return self._inotify

    def _refused(self, exc: OSError, path: str) -> None:
        if exc.errno == errno.ENOSPC:
            self._notice(
                "watches",
                "inotify watch limit reached (fs.inotify.max_user_watches = "
                f"{_sysctl('max_user_watches')}): polling the remaining directories; "
                "raise it, e.g. sudo sysctl fs.inotify.max_user_watches=524288",
            )
        else:
            log.debug("cannot watch %s natively (%s): polling it", path, exc)

    def _notice(self, key: str, message: str) -> None:
        """Say ``message`` once per process (to the listeners, else to the log)."""
        if key in self._warned:
            return
        self._warned.add(key)
        listeners = list(self.notice_listeners)
        if not listeners:
            log.warning("%s", message)
        for listener in listeners:
            try:
                listener(message)
            except Exception:
                log.exception("watch notice listener failed")

    # -- the notifier (lock held) -------------------------------------------------------

    def _drop_notified(self, watch: DirectoryWatch) -> None:
        watch.notified = False
        sharing = self._by_path.get(watch.path, [])
        if watch in sharing:
            sharing.remove(watch)
        if not sharing and watch.path in self._by_path:
            del self._by_path[watch.path]
            for real, names in list(self._real.items()):
                names.discard(watch.path)
                if not names:
                    del self._real[real]

    def _rebuild(self) -> None:
        """Make the notifier watch exactly the directories in `_by_path`: a new one
        over the whole set (the old one is drained and closed by the thread)."""
        wanted = frozenset(self._by_path)
        current = self._notifier
        if current is not None and current.paths == wanted:
            return
        fresh: Notifier | None = None
        if wanted:
            fresh = self._new_notifier(wanted, current)
        if current is not None:
            current.retired = True
            self._retiring.append(current)
        self._notifier = fresh
        if self._by_path and self._thread is not None:
            self._wake()

    def _new_notifier(self, wanted: frozenset[str], current: Notifier | None) -> Notifier | None:
        """A notifier over ``wanted``; directories it refuses are polled (those gone
        report `Flag.GONE`), and everything is when it cannot start at all."""
        try:
            return Notifier(wanted)
        except (OSError, RuntimeError, ImportError) as exc:
            first = exc
        # Who refuses? The directories new to the notifier first, then all of them.
        old = current.paths if current is not None else frozenset()
        for suspects in (sorted(wanted - old), sorted(wanted)):
            for path in suspects:
                try:
                    Notifier(frozenset([path])).close()
                except (OSError, RuntimeError, ImportError) as exc:
                    log.debug("cannot watch %s natively (%s): polling it", path, exc)
                    self._to_polling(path)
            left = frozenset(self._by_path)
            if not left:
                return None
            try:
                return Notifier(left)
            except (OSError, RuntimeError, ImportError) as exc:
                first = exc
        log.warning("file notifications unavailable (%s): polling watched directories", first)
        self._native_failed = True
        for path in sorted(self._by_path):
            self._to_polling(path)
        return None

    def _to_polling(self, path: str) -> None:
        for watch in list(self._by_path.get(path, [])):
            self._drop_notified(watch)
            try:
                _take_snapshot(watch)
            except OSError:
                self._pending.append((watch, Event(watch.path, Flag.GONE)))
                continue
            watch.polled = True
            self._polled.append(watch)

    # -- the thread ---------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            self._wake()  # a new polled directory may change the timeout
            return
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe is awake enough
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._wake_r, self._stop), name="caproni-watch", daemon=True
        )
        self._thread.start()

    def _stop_thread(self) -> threading.Thread | None:
        thread, self._thread = self._thread, None
        if self._stop is not None:
            self._stop.set()  # out of the notifier's wait within a step
            self._stop = None
        self._wake()
        self._wake_w = -1
        return thread

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _run(self, wake_r: int, stop: threading.Event) -> None:
        me = threading.current_thread()
        wake_w = self._wake_w
        next_poll = time.monotonic() + poll_interval()
        try:
            while True:
                with self._lock:
                    if self._thread is not me:
                        return
                    inotify = self._inotify
                    pending, self._pending = self._pending, []
                    notifier = self._retiring[0] if self._retiring else self._notifier
                    polled = bool(self._polled)
                if pending:
                    self._deliver_pending(pending)
                if notifier is not None:
                    self._wait_notifier(notifier, stop, next_poll if polled else None)
                    if polled and time.monotonic() >= next_poll:
                        self._poll()
                        next_poll = time.monotonic() + poll_interval()
                    continue
                timeout = poll_interval() if polled else None
                readable = [wake_r] + ([inotify.fd] if inotify is not None else [])
                try:
                    ready, _, _ = select.select(readable, [], [], timeout)
                except (OSError, ValueError):
                    ready = []  # the fd was closed under us: re-read the state
                if wake_r in ready:
                    with contextlib.suppress(OSError):
                        os.read(wake_r, 4096)
                if inotify is not None and inotify.fd in ready:
                    self._deliver_native(inotify)
                if not ready:
                    self._poll()
                    next_poll = time.monotonic() + poll_interval()
        finally:
            os.close(wake_r)
            with self._lock:
                os.close(wake_w)
                closing = []
                if self._thread is None:
                    if not self._by_wd and self._inotify is not None:
                        self._inotify.close()
                        self._inotify = None
                    closing, self._retiring = self._retiring, []
                    if not self._by_path and self._notifier is not None:
                        closing.append(self._notifier)
                        self._notifier = None
            for notifier in closing:
                notifier.close()

    def _wait_notifier(
        self, notifier: Notifier, stop: threading.Event, poll_at: float | None
    ) -> None:
        """One wait in ``notifier`` and the delivery of what it saw. A retired one is
        waited in once more, briefly (what it saw before its successor started), then
        closed."""
        draining = notifier.retired
        if draining:
            timeout_ms = 1  # one step: what is already collected
        else:
            timeout_ms = NOTIFY_TIMEOUT_MS
            if poll_at is not None:
                timeout_ms = max(1, min(timeout_ms, int((poll_at - time.monotonic()) * 1000)))
        try:
            changes = notifier.wait(timeout_ms, stop)
        except Exception as exc:  # its thread failed: rebuild it
            log.warning("file notifications failed (%s): watching again", exc)
            changes = None
            with self._lock:
                if self._notifier is notifier:
                    self._notifier = None
                    self._rebuild()
                    notifier.retired = True
                    self._retiring.append(notifier)
        if changes:
            self._deliver_notify(changes, notifier)
        if draining and not stop.is_set():
            with self._lock:
                if notifier in self._retiring:
                    self._retiring.remove(notifier)
            notifier.close()

    def _deliver_notify(self, changes: Changes, notifier: Notifier) -> None:
        kinds: dict[str, set[int]] = {}
        for change, path in changes:
            kinds.setdefault(path, set()).add(change)
        batches: dict[int, tuple[DirectoryWatch, list[Event]]] = {}
        with self._lock:
            # What a retired notifier reported after its successor started, the successor
            # reports too: a path reported before is dropped while it is as it was then.
            for path in [p for p in kinds if p in self._overlap]:
                if _signature(path) == self._overlap[path]:
                    del kinds[path]
            if notifier.retired:
                self._overlap.update((path, _signature(path)) for path in kinds)
            else:
                self._overlap = {}
            gone = False
            for path in sorted(kinds):
                own = self._named(path)
                events = _notify_events(kinds[path], path, bool(own))
                for directory in own:  # an event on a watched directory itself
                    gone = self._on_directory(directory, kinds[path], batches) or gone
                parent, name = os.path.split(path)
                for directory in self._named(parent):
                    for w in self._by_path.get(directory, []):
                        for flags in events:
                            _add(batches, w, Event(os.path.join(directory, name), flags))
            if gone and not self._batch:
                self._rebuild()
        _call(batches)

    def _named(self, path: str) -> list[str]:
        """The watched directories ``path`` names (itself, or as its real path: the
        notifier may report resolved paths, /private/var for /var on macOS)."""
        found = {path} if path in self._by_path else set()
        found |= self._real.get(path, set())
        return sorted(found)

    def _on_directory(
        self,
        directory: str,
        kinds: set[int],
        batches: dict[int, tuple[DirectoryWatch, list[Event]]],
    ) -> bool:
        """An event on a watched directory itself: gone (deleted, moved, replaced), a
        change of its attributes (modified), or its creation as its parent saw it
        (nothing to say). True when its watches are over. A deletion decides, not the
        identity: a directory re-created at once may get the same inode number (ext4),
        and the notifier's watch died with the old one."""
        watches = list(self._by_path.get(directory, []))
        try:
            st = os.stat(directory)
            same = _DELETED not in kinds and all(
                w.identity == (st.st_dev, st.st_ino) for w in watches
            )
        except OSError:
            same = False
        if same and _MODIFIED not in kinds:
            return False
        for w in watches:
            _add(batches, w, Event(directory, Flag.ATTRIB | Flag.IS_DIR if same else Flag.GONE))
            if not same:
                self._drop_notified(w)
        return not same

    def _deliver_pending(self, pending: list[tuple[DirectoryWatch, Event]]) -> None:
        batches: dict[int, tuple[DirectoryWatch, list[Event]]] = {}
        for watch, event in pending:
            _add(batches, watch, event)
        _call(batches)

    def _deliver_native(self, inotify: Inotify) -> None:
        try:
            raw = inotify.read()
        except OSError as exc:
            if exc.errno != errno.EBADF:  # EBADF: closed under us, this thread is ending
                log.warning("reading file events failed: %s", exc)
            return
        batches: dict[int, tuple[DirectoryWatch, list[Event]]] = {}
        with self._lock:
            for wd, mask, name in raw:
                if mask & _IN_Q_OVERFLOW:
                    for watches in self._by_wd.values():
                        for w in watches:
                            _add(batches, w, Event(w.path, Flag.OVERFLOW))
                    continue
                watches = self._by_wd.get(wd, [])
                gone = bool(mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED))
                for w in watches:
                    if gone:
                        _add(batches, w, Event(w.path, Flag.GONE))
                    else:
                        flags = Flag(0)
                        for bit, flag in _FLAGS:
                            if mask & bit:
                                flags |= flag
                        _add(
                            batches, w, Event(os.path.join(w.path, name) if name else w.path, flags)
                        )
                if gone and wd in self._by_wd:
                    for w in self._by_wd.pop(wd):
                        w.wd = None
                    if not (mask & _IN_IGNORED):
                        inotify.rm_watch(wd)
        _call(batches)

    def _poll(self) -> None:
        with self._lock:
            polled = list(self._polled)
        batches: dict[int, tuple[DirectoryWatch, list[Event]]] = {}
        for w in polled:
            for event in _poll_changes(w):
                _add(batches, w, event)
        _call(batches)


def _add(
    batches: dict[int, tuple[DirectoryWatch, list[Event]]], watch: DirectoryWatch, event: Event
) -> None:
    batches.setdefault(id(watch), (watch, []))[1].append(event)


def _call(batches: dict[int, tuple[DirectoryWatch, list[Event]]]) -> None:
    for watch, events in batches.values():
        if watch.closed:
            continue
        try:
            watch.callback(events)
        except Exception:  # one broken watcher must not starve the others
            log.exception("file event callback failed")


def _not_a_directory(exc: OSError, path: str) -> OSError:
    if exc.errno == errno.ENOTDIR or os.path.exists(path):
        return NotADirectoryError(errno.ENOTDIR, "not a directory", path)
    return FileNotFoundError(errno.ENOENT, "no such directory", path)


def _sysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/fs/inotify/{name}") as handle:
            return handle.read().strip()
    except OSError:
        return "?"


def _scan(path: str) -> dict[str, tuple[int, int, int, int]]:
    found = {}
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found[entry.name] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
    return found


def _take_identity(watch: DirectoryWatch) -> None:
    try:
        st = os.stat(watch.path)
    except OSError as exc:
        raise _not_a_directory(exc, watch.path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", watch.path)
    watch.identity = (st.st_dev, st.st_ino)


def _take_snapshot(watch: DirectoryWatch) -> None:
    _take_identity(watch)
    watch.snapshot = _scan(watch.path)


def _signature(path: str) -> tuple[int, int, int, int] | None:
    """What a change of ``path`` left: (inode, size, mtime_ns, mode), None if absent."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def _notify_events(kinds: set[int], path: str, is_watched: bool) -> list[Flag]:
    """The notifier's changes of one path in one batch, as flags. Its batches are sets
    (no order, one of each kind): added and deleted together are a delete then a
    re-creation if the path exists now, else the reverse."""
    info = _signature(path)
    if info is not None:
        kind = Flag.IS_DIR if stat.S_ISDIR(info[3]) else Flag(0)
    else:
        kind = Flag.IS_DIR if is_watched else Flag(0)
    flags = Flag(0)
    if _ADDED in kinds:
        flags |= Flag.CREATED
    if _MODIFIED in kinds:
        flags |= Flag.MODIFIED
    if _DELETED not in kinds:
        return [flags | kind] if flags else []
    if not flags:
        return [Flag.DELETED | kind]
    if info is None:
        return [flags | kind, Flag.DELETED | kind]
    return [Flag.DELETED | kind, flags | kind]


def _poll_changes(watch: DirectoryWatch) -> list[Event]:
    """What changed in a polled directory since its last look."""
    try:
        st = os.stat(watch.path)
        if (st.st_dev, st.st_ino) != watch.identity:
            raise FileNotFoundError(watch.path)
        now = _scan(watch.path)
    except OSError:
        return [Event(watch.path, Flag.GONE)]
    events = []
    before = watch.snapshot
    for name, info in now.items():
        old = before.get(name)
        kind = Flag.IS_DIR if stat.S_ISDIR(info[3]) else Flag(0)
        full = os.path.join(watch.path, name)
        if old is None:
            events.append(Event(full, Flag.CREATED | Flag.CLOSE_WRITE | kind))
        elif old[0] != info[0]:
            events.append(Event(full, Flag.MOVED_TO | kind))
        elif old != info:
            events.append(Event(full, Flag.MODIFIED | Flag.CLOSE_WRITE | kind))
    for name, info in before.items():
        if name not in now:
            kind = Flag.IS_DIR if stat.S_ISDIR(info[3]) else Flag(0)
            events.append(Event(os.path.join(watch.path, name), Flag.DELETED | kind))
    watch.snapshot = now
    return events


LAYER = WatchLayer()


def _shutdown(layer: WatchLayer = LAYER) -> None:
    """At interpreter exit: end the thread before daemon threads are frozen."""
    with layer._lock:
        thread = layer._stop_thread()
    if thread is not None:
        thread.join(1.0)


atexit.register(_shutdown)
