"""The one file-watching layer of the package: reloaders and runtime variables share it.

A watch is on one directory, non-recursively (recursion is the caller's choice of
directories, so ignored trees never cost a kernel watch). Many watches of one
directory share one kernel watch; every watch of the process shares one inotify
instance and one thread, which blocks in ``select`` until the kernel has events (no
wake-ups while nothing changes) and hands each watch the events of its directory, in
the batches the kernel returned them.

Events say what happened, finer than "modified": a write that was *finished*
(``CLOSE_WRITE``: the writer closed the file) or a rename onto a name (``MOVED_TO``, the
last step of an atomic save) lets a reloader restart at once instead of waiting for a
quiet period to be sure the save is over.

Why not watchfiles (which the package used before): its public API watches a tree
recursively, placing a kernel watch in every directory below, ignored ones included,
and filters afterwards (``watch: ["**/*.py"]`` beside a 5,000-directory
``node_modules`` cost 5,053 watches); its events do not tell a finished write from a
partial one, so the end of a save can only be guessed with a quiet time; its loop wakes
every ``step`` ms whatever happens; and adding one directory to a non-recursive watch
means rebuilding the whole notifier. The inotify calls used here are three libc
functions, through ctypes.

When the kernel refuses a watch because ``fs.inotify.max_user_watches`` (or, for the
instance itself, ``fs.inotify.max_user_instances``) is reached, the layer says so once,
names the setting to raise, and polls the directories it could not watch (stat of
their entries every `poll_interval` seconds). Elsewhere than Linux, and when
``WATCHFILES_FORCE_POLLING`` is set (network filesystems, Docker bind mounts), every
directory is polled.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Any

__all__ = [
    "LAYER",
    "DirectoryWatch",
    "Event",
    "Flag",
    "WatchLayer",
    "polling_forced",
]

log = logging.getLogger("caproni_tasks.fswatch")

#: Default polling interval (seconds) for directories the kernel cannot watch.
POLL_INTERVAL = 0.3


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


def polling_forced() -> bool:
    """``WATCHFILES_FORCE_POLLING`` set and not ``false``/``disable``/``disabled`` (the
    variable watchfiles users already know)."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return bool(value) and value.lower() not in {"false", "disable", "disabled"}


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


@dataclass(eq=False)
class DirectoryWatch:
    """One watcher's interest in one directory; `close` ends it."""

    layer: WatchLayer
    path: str
    callback: Callback
    polled: bool = False
    wd: int | None = None
    closed: bool = False
    #: Polled directories: entry name -> (inode, size, mtime_ns, mode), and our identity.
    snapshot: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    identity: tuple[int, int] | None = None

    def close(self) -> None:
        self.layer.unwatch(self)


class WatchLayer:
    """Process-wide directory watches on one inotify instance and one thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inotify: Inotify | None = None
        self._native_failed = False  # no inotify here, or no instance left: poll all
        self._by_wd: dict[int, list[DirectoryWatch]] = {}
        self._polled: list[DirectoryWatch] = []
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._warned: set[str] = set()
        self.notice_listeners: list[NoticeCallback] = []

    # -- accounting (tests, diagnostics) -----------------------------------------------

    def kernel_watches(self) -> int:
        """Kernel watches held (one per watched directory inode)."""
        with self._lock:
            return len(self._by_wd)

    def native_directories(self) -> list[str]:
        with self._lock:
            return sorted({w.path for ws in self._by_wd.values() for w in ws})

    def polled_directories(self) -> list[str]:
        with self._lock:
            return sorted({w.path for w in self._polled})

    # -- watching ---------------------------------------------------------------------------

    def watch(self, path: str, callback: Callback, *, poll: bool = False) -> DirectoryWatch:
        """Watch the directory ``path`` (live when this returns). FileNotFoundError or
        NotADirectoryError when it is not a directory; a directory the kernel cannot
        watch is polled. ``poll`` forces polling (as does ``WATCHFILES_FORCE_POLLING``)."""
        watch = DirectoryWatch(self, path, callback)
        poll = poll or polling_forced() or not sys.platform.startswith("linux")
        with self._lock:
            if not poll:
                inotify = self._native()
                if inotify is None:
                    poll = True
                else:
                    try:
                        watch.wd = inotify.add_watch(path)
                    except OSError as exc:
                        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                            raise _not_a_directory(exc, path) from None
                        self._refused(exc, path)
                        poll = True
            if poll:
                watch.polled = True
                _take_snapshot(watch)  # raises FileNotFoundError/NotADirectoryError
                self._polled.append(watch)
            else:
                assert watch.wd is not None
                self._by_wd.setdefault(watch.wd, []).append(watch)
            self._ensure_thread()
        return watch

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
            if not self._by_wd and not self._polled:
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

    # -- the thread ---------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            self._wake()  # a new polled directory may change the timeout
            return
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(
            target=self._run, args=(self._wake_r,), name="caproni-watch", daemon=True
        )
        self._thread.start()

    def _stop_thread(self) -> threading.Thread | None:
        thread, self._thread = self._thread, None
        self._wake()
        self._wake_w = -1
        return thread

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _run(self, wake_r: int) -> None:
        me = threading.current_thread()
        wake_w = self._wake_w
        try:
            while True:
                with self._lock:
                    if self._thread is not me:
                        return
                    inotify = self._inotify
                    timeout = poll_interval() if self._polled else None
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
        finally:
            os.close(wake_r)
            with self._lock:
                os.close(wake_w)
                if self._thread is None and not self._by_wd and self._inotify is not None:
                    self._inotify.close()
                    self._inotify = None

    def _deliver_native(self, inotify: Inotify) -> None:
        try:
            raw = inotify.read()
        except OSError as exc:
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


def _take_snapshot(watch: DirectoryWatch) -> None:
    try:
        st = os.stat(watch.path)
    except OSError as exc:
        raise _not_a_directory(exc, watch.path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", watch.path)
    watch.identity = (st.st_dev, st.st_ino)
    watch.snapshot = _scan(watch.path)


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


def _shutdown(layer: Any = LAYER) -> None:
    """At interpreter exit: end the thread before daemon threads are frozen."""
    with layer._lock:
        thread = layer._stop_thread()
    if thread is not None:
        thread.join(1.0)


atexit.register(_shutdown)
