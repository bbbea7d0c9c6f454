"""Delete installed paths beneath a root without ever following a symlink on the way.

A package update can turn a directory into a symlink (``d/tool`` in v1, ``d -> bin`` in
v2). Deleting v1's ``d/tool`` by path would then go through the new link and delete
``bin/tool``, which may belong to another package or to the user. Here every parent is
opened relative to the one before it with ``O_NOFOLLOW``: when a parent is a symlink
(or a file, or gone), whatever the old version put below it is already gone, and
nothing is deleted.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["remove_dir_beneath", "remove_file_beneath"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_NO_FOLLOW_DIR_FLAGS = _DIR_FLAGS | os.O_NOFOLLOW
#: A parent that is missing, a symlink (ELOOP with O_NOFOLLOW) or not a directory.
_NOT_A_REAL_PARENT = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)


def _open_parent(root: Path, rel: str) -> tuple[int, str] | None:
    """An fd of the real directory holding root-relative ``rel``, and its last part.

    ``None`` when a parent is missing or is not a real directory. The root itself may be
    a symlink (the user chose it); nothing below it is followed.
    """
    *parents, name = rel.split("/")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parents:
            try:
                child = os.open(part, _NO_FOLLOW_DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in _NOT_A_REAL_PARENT:
                    os.close(fd)
                    return None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, name


def remove_file_beneath(root: Path, rel: str) -> bool:
    """Delete the file or symlink at ``rel`` (never a directory); True if one was deleted.

    Raises `OSError` only for a real failure to delete (e.g. permissions).
    """
    opened = _open_parent(root, rel)
    if opened is None:
        return False
    fd, name = opened
    try:
        try:
            status = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(status.st_mode):
            return False
        os.unlink(name, dir_fd=fd)
        return True
    finally:
        os.close(fd)


def remove_dir_beneath(root: Path, rel: str) -> bool:
    """Delete the directory at ``rel`` if it is empty (never a symlink); True if deleted."""
    try:
        opened = _open_parent(root, rel)
    except OSError:
        return False
    if opened is None:
        return False
    fd, name = opened
    try:
        os.rmdir(name, dir_fd=fd)  # ENOTDIR for a symlink, ENOTEMPTY for a full one
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
