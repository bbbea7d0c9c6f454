"""Read a file the user named, refusing anything that is not a regular file.

``open()`` on a FIFO blocks until a writer appears (forever, in CI), and a device can
stream without end. Every reader of a user-named input (ensure, versions and config
files) goes through `read_regular_file`: it opens without blocking, checks the opened
file itself (no race between a check and the open) and only then reads.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["NotRegularFileError", "read_regular_file", "read_regular_text"]

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class NotRegularFileError(OSError):
    """The path exists but is not a regular file; ``strerror`` says what it is."""


def read_regular_file(path: Path | str) -> bytes:
    """The bytes of ``path``; `NotRegularFileError` (an `OSError`) if it is not a file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except ValueError:  # a NUL in the path: no such file can exist
        raise OSError(errno.EINVAL, "the path contains a NUL character", os.fspath(path)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise NotRegularFileError(
                errno.EINVAL, f"it is {kind}, not a regular file", os.fspath(path)
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def read_regular_text(path: Path | str) -> str:
    """`read_regular_file` decoded as UTF-8 with universal newlines, as ``read_text``
    gives (`UnicodeDecodeError` for other bytes)."""
    text = read_regular_file(path).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
