"""Replace a file in one rename, durably: readers see the old or the new file, whole.

One helper for every writer in the package (state records, cache entries, formatted
files, package files). The data is fsynced before the rename and the directory entry
after it, so a power cut leaves the old file or the new one, never an empty one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_output",
    "flush_filesystem",
    "fsync_directory",
    "write_atomic",
]


def fsync_directory(directory: Path) -> None:
    """Make a rename or removal inside ``directory`` survive a power cut.

    Best effort: some filesystems refuse to fsync a directory; nothing more can be done there.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(
    path: Path,
    *,
    mode: int | None = 0o644,
    owner_of: os.stat_result | None = None,
    durable: bool = True,
) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without error.

    The temporary file lives beside ``path`` (same filesystem, so the rename is atomic)
    under a hidden name; it is removed if the block raises. ``mode`` sets its permission
    bits (``None`` keeps mkstemp's 0600). ``owner_of`` copies uid/gid where allowed (root
    rewriting a user's file). ``durable=False`` skips the fsyncs for caches that may be
    lost without harm.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    temporary = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if owner_of is not None and (owner_of.st_uid, owner_of.st_gid) != (
            os.getuid(),
            os.getgid(),
        ):
            with contextlib.suppress(OSError):
                os.chown(temporary, owner_of.st_uid, owner_of.st_gid)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(directory)


def write_atomic(
    path: Path,
    data: bytes | str,
    *,
    mode: int | None = 0o644,
    owner_of: os.stat_result | None = None,
    durable: bool = True,
) -> None:
    """Replace ``path`` by ``data`` (str is written as UTF-8); see :func:`atomic_output`."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(path, mode=mode, owner_of=owner_of, durable=durable) as out:
        out.write(payload)


def flush_filesystem(directory: Path) -> None:
    """Put every file written so far on ``directory``'s filesystem on disk, e.g. staged
    files before a commit record points at them.

    One ``syncfs`` of the root's filesystem where the OS has it (Linux): measured far
    cheaper than an fsync per file for thousands of files. Elsewhere, ``os.sync``.
    """
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    try:
        import ctypes

        found: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "syncfs", None)
    except OSError:
        return None
    return found
