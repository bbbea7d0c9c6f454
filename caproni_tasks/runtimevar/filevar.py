"""The file driver: a variable whose value is the content of a file.

Each refresh (1) works out which directory entries decide what the path names — the
path itself, every symlink met while resolving it (a Kubernetes ``..data`` swap
re-points one), the final target, or for a missing path its first missing component —
(2) makes sure the directories holding them are watched, then (3) reads and decodes.
Watching before reading means no change can slip between the two. Equal bytes after
a good value, and errors equal to the current error, are not new states.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from caproni_tasks.runtimevar.decoders import Decoder
from caproni_tasks.runtimevar.errors import ErrorCode, VariableError, make_error
from caproni_tasks.runtimevar.scheduler import SCHEDULER, Timer
from caproni_tasks.runtimevar.variable import Publish, Snapshot, Variable
from caproni_tasks.runtimevar.watcher import REGISTRY, Subscription, log

T = TypeVar("T")

#: Retry interval for errors no file event clears (Go Cloud's default WaitDuration).
DEFAULT_WAIT = 30.0
#: The range of retry intervals: shorter would spin on a file that stays unreadable,
#: longer is no retry at all (URLs outside it are refused; the Python API clamps).
MIN_WAIT = 0.01
MAX_WAIT = 24 * 3600.0
#: Symlink hops before giving up, as the kernel does (ELOOP).
MAX_LINKS = 40
_READ_CHUNK = 1 << 16
_RESOLVE_ATTEMPTS = 5
#: When a path kept changing while it was being watched, look again this soon.
_UNSETTLED_RETRY_S = 0.02


def open_file_variable(
    path: str | os.PathLike[str], decoder: Decoder[T], *, wait: float = DEFAULT_WAIT
) -> Variable[T]:
    """A `Variable` holding *path*'s content decoded by *decoder*.

    A missing file is not an error here: ``watch`` raises NOT_FOUND and ``latest``
    blocks until the file appears. *wait* (seconds; 0 or less means the default 30)
    is the retry interval for errors that no file event clears, kept within
    [`MIN_WAIT`, `MAX_WAIT`]. A path containing a NUL character is an INVALID_ARGUMENT
    `VariableError`: no file can have that name.
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise VariableError(
            ErrorCode.INVALID_ARGUMENT, f"{text!r}: a file path cannot contain a NUL character"
        )
    absolute = os.path.abspath(text)
    driver = FileDriver(absolute, decoder, clamp_wait(wait))
    return Variable(driver, name=absolute)


def clamp_wait(wait: float) -> float:
    """*wait* within [`MIN_WAIT`, `MAX_WAIT`]; 0, a negative value or NaN is the default."""
    if not wait > 0:  # also NaN
        return DEFAULT_WAIT
    return min(max(wait, MIN_WAIT), MAX_WAIT)


def watch_points(path: str) -> dict[str, frozenset[str]]:
    """Directory -> entries in it whose change can change what *path* names.

    Walks *path* like the kernel does, recording every symlink (except those directly in
    ``/``: system layout such as ``/tmp -> private/tmp``), the final target, or the
    first missing component under its nearest existing ancestor.
    """
    points: set[str] = set()
    pending = _components(path)
    current = "/"
    hops = 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, name)
        try:
            st = os.lstat(candidate)
        except OSError:
            points.add(candidate)  # missing or unreachable: its appearance is the event
            break
        if stat.S_ISLNK(st.st_mode):
            if current != "/":
                points.add(candidate)
            hops += 1
            try:
                target = os.readlink(candidate)
            except OSError:
                break
            if hops > MAX_LINKS:
                break
            if os.path.isabs(target):
                current = "/"
            pending[:0] = _components(target)
            continue
        if not stat.S_ISDIR(st.st_mode) and any(c not in ("", ".") for c in pending):
            points.add(candidate)  # a file where a directory should be: watch for its swap
            break
        current = candidate
        if not pending:
            points.add(candidate)
    grouped: dict[str, set[str]] = defaultdict(set)
    for point in points:
        grouped[os.path.dirname(point)].add(point)
    return {directory: frozenset(names) for directory, names in grouped.items()}


def _components(path: str) -> list[str]:
    return path.split("/")


def read_bytes(path: str) -> bytes:
    """The whole content of the regular file at *path* (OSError otherwise).

    Opened non-blocking so a FIFO cannot hang the watcher; anything but a regular file
    is refused.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks = []
        while True:
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def error_for_os_error(path: str, exc: OSError) -> VariableError:
    """Map a read failure to a code: the original calls all of these NOT_FOUND."""
    code = errno_code(exc.errno)
    reason = {
        ErrorCode.NOT_FOUND: "file does not exist",
        ErrorCode.PERMISSION_DENIED: "permission denied",
    }.get(code)
    if reason is None:
        if exc.errno == errno.EISDIR:
            reason = "is a directory, not a file"
        elif exc.errno == errno.ELOOP:
            reason = "too many levels of symbolic links"
        else:
            reason = exc.strerror or str(exc)
    return make_error(code, f"{path}: {reason}", exc)


def errno_code(number: int | None) -> ErrorCode:
    if number in (errno.ENOENT, errno.ENOTDIR):
        return ErrorCode.NOT_FOUND
    if number in (errno.EACCES, errno.EPERM):
        return ErrorCode.PERMISSION_DENIED
    if number in (errno.EISDIR, errno.EINVAL, errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO):
        return ErrorCode.INVALID_ARGUMENT
    if number in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return ErrorCode.RESOURCE_EXHAUSTED
    return ErrorCode.UNKNOWN


class FileDriver:
    """Feeds a `Variable` from one file; see the module docstring for the cycle."""

    def __init__(self, path: str, decoder: Decoder[Any], wait: float) -> None:
        self.path = path
        self.decoder = decoder
        self.wait = wait
        self._publish: Publish | None = None
        self._lock = threading.Lock()  # one refresh at a time; stop waits for it
        self._stopped = False
        self._subscriptions: dict[str, Subscription] = {}
        self._degraded = False  # some directory could not be watched
        self._last_good_bytes: bytes | None = None  # None while the state is an error
        self._stuck = False  # the current error is one no file event will clear
        self._retry: Timer | None = None

    def start(self, publish: Publish) -> None:
        self._publish = publish
        self.refresh()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            subscriptions, self._subscriptions = self._subscriptions, {}
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
        for subscription in subscriptions.values():
            subscription.release(wait=True)

    def refresh(self) -> None:
        """Re-resolve, re-watch, re-read; called at start, on events and on retries."""
        with self._lock:
            if self._stopped or self._publish is None:
                return
            settled = self._watch()
            state = self._read()
            if state is not None:
                self._publish(state)
            if settled:
                self._schedule_retry()
            else:  # still changing: look again shortly rather than after `wait`
                self._schedule_retry(_UNSETTLED_RETRY_S)

    def _watch(self) -> bool:
        """Watch what *path* resolves through; False if it kept changing meanwhile.

        A directory created (or removed) between resolving and its watch going live
        sent its event to no one (``rm -rf d && mkdir d``), so the path is resolved
        again after subscribing until what is watched is what exists.
        """
        for _ in range(_RESOLVE_ATTEMPTS):
            try:
                wanted = watch_points(self.path)
                self._degraded = self._subscribe(wanted)
            except FileNotFoundError:
                continue  # a directory vanished between resolving and watching: again
            if watch_points(self.path) == wanted:
                return True
        return False

    def _subscribe(self, wanted: dict[str, frozenset[str]]) -> bool:
        """Match subscriptions to *wanted*; True if some directory cannot be watched.

        New watches are made before old ones are released, so a refresh never leaves
        the layer without a watch for a moment (its thread would stop, and joining it
        from here could wait on a callback that waits on this variable's lock).
        """
        degraded = False
        obsolete: list[Subscription] = []
        for directory, paths in wanted.items():
            existing = self._subscriptions.get(directory)
            if existing is not None and existing.valid():
                if existing.paths != paths:
                    existing.update(paths)
                continue
            try:
                subscription = REGISTRY.subscribe(directory, paths, self.refresh)
            except FileNotFoundError:
                raise
            except Exception as exc:  # not watchable at all: the retry timer covers it
                level = logging.DEBUG if self._degraded else logging.WARNING
                log.log(
                    level, "cannot watch %s (retrying every %ss): %s", directory, self.wait, exc
                )
                degraded = True
                continue
            if existing is not None:
                obsolete.append(existing)
            self._subscriptions[directory] = subscription
        for directory in [d for d in self._subscriptions if d not in wanted]:
            obsolete.append(self._subscriptions.pop(directory))
        for subscription in obsolete:
            subscription.release()
        return degraded

    def _read(self) -> Snapshot[Any] | VariableError | None:
        try:
            data = read_bytes(self.path)
        except OSError as exc:
            self._last_good_bytes = None
            error = error_for_os_error(self.path, exc)
            # Creation and deletion are file events; permissions, a directory in the
            # way or I/O trouble are not.
            self._stuck = error.code is not ErrorCode.NOT_FOUND
            return error
        self._stuck = False
        if self._last_good_bytes is not None and data == self._last_good_bytes:
            return None
        try:
            value = self.decoder.decode(data)
        except VariableError as exc:
            self._last_good_bytes = None
            located = VariableError(exc.code, f"{self.path}: {exc.message}")
            located.__cause__ = exc.__cause__
            located.__suppress_context__ = True
            return located
        self._last_good_bytes = data
        return Snapshot(value, datetime.now(UTC))

    def _schedule_retry(self, delay: float | None = None) -> None:
        """Re-read after ``wait`` while stuck or not fully watched; ``delay`` (sooner)
        when the path was still changing while it was being watched."""
        if delay is not None:
            if self._retry is not None:
                self._retry.cancel()
            self._retry = SCHEDULER.call_later(delay, self._retry_now)
            return
        needed = self._stuck or self._degraded
        if not needed:
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            return
        if self._retry is None or self._retry.cancelled:
            self._retry = SCHEDULER.call_later(self.wait, self._retry_now)

    def _retry_now(self) -> None:
        with self._lock:
            self._retry = None
        self.refresh()
