"""An exclusive lock between processes, held on a lock file with ``flock``.

Used to serialise writers of one repository package index and concurrent
installs into one root. ``flock`` locks belong to an open file description, so two
`FileLock` objects exclude each other even inside one process, and the kernel drops
the lock when its holder dies (SIGKILL included): a stale lock file never blocks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["FileLock", "LockTimeoutError"]


class LockTimeoutError(TimeoutError):
    """The lock stayed taken for the whole timeout."""

    error_code = "io_error"

    def __init__(self, path: Path, timeout: float, holder: int | None) -> None:
        who = f"process {holder}" if holder else "another process"
        super().__init__(
            f"timed out after {timeout:g}s waiting for the lock {path} held by {who}; "
            "if that process is gone for good, something else holds the file open"
        )
        self.path = path
        self.timeout = timeout
        self.holder = holder


class FileLock:
    """``with FileLock(path, timeout=60, on_wait=say_waiting):`` — exclusive, re-usable.

    ``timeout`` is in seconds (``None`` waits forever, ``0`` tries once). ``on_wait``
    is called once, before waiting, when the lock is taken by someone else, so callers
    can tell the user why nothing happens. The holder's pid is written into the lock
    file to make timeouts explainable; the file itself is never deleted (deleting it
    would let two processes lock two different files of the same name).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        timeout: float | None = 600.0,
        on_wait: Callable[[], None] | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.on_wait = on_wait
        self.poll_interval = poll_interval
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if not _try_lock(fd):
                if self.on_wait is not None:
                    self.on_wait()
                self._wait(fd)
            _record_holder(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _wait(self, fd: int) -> None:
        if self.timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + self.timeout
        delay = self.poll_interval
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(self.path, self.timeout, _read_holder(fd))
            time.sleep(min(delay, remaining))
            if _try_lock(fd):
                return
            delay = min(delay * 1.5, 0.5)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _record_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is only a courtesy for error messages


def _read_holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
