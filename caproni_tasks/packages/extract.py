"""Write the entries of a validated package into a staging directory.

Files are created with their final permission bits in one ``open`` (no chmod pass),
hashed while they are written (the hash goes into the installed manifest for
``CheckIntegrity``), and never fsynced one by one (thousands of fsyncs cost more than
the extraction); with ``durable_data`` one filesystem flush before the commit makes
them durable (see `execution`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.packages.state import InstalledFile

if TYPE_CHECKING:
    from caproni_tasks.packages.format import FileEntry, PackageReader

__all__ = ["file_mode", "stage_entries", "stage_version_file"]

_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def file_mode(executable: bool, writable: bool) -> int:
    """Installed permission bits: read-only unless the package marks the file writable."""
    mode = 0o444
    if executable:
        mode |= 0o111
    if writable:
        mode |= 0o200
    return mode


def stage_entries(
    reader: PackageReader,
    entries: Iterable[FileEntry],
    staging: Path,
    *,
    progress: Callable[[int], None] | None = None,
    after_each: Callable[[int], None] | None = None,
) -> list[InstalledFile]:
    """Write ``entries`` under ``staging``; return what was written (paths as in the package).

    ``progress`` receives byte counts; ``after_each`` the number of entries done so far.
    """
    made_dirs: set[Path] = set()
    written: list[InstalledFile] = []
    for count, entry in enumerate(entries, 1):
        dest = staging / entry.name
        parent = dest.parent
        if parent not in made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(parent)
        if entry.symlink_target is not None:
            os.symlink(entry.symlink_target, dest)
            written.append(InstalledFile(entry.name, 0, 0, 0, "", entry.symlink_target))
        else:
            written.append(_write_file(reader, entry, dest, progress))
        if after_each is not None:
            after_each(count)
    return written


def _write_file(
    reader: PackageReader,
    entry: FileEntry,
    dest: Path,
    progress: Callable[[int], None] | None,
) -> InstalledFile:
    digest = hashlib.sha256()
    fd = os.open(dest, _OPEN_FLAGS, file_mode(entry.executable, entry.writable))
    try:
        with reader.open(entry) as source:
            while data := source.read(_CHUNK):
                digest.update(data)
                chunk = memoryview(data)
                while chunk:
                    chunk = chunk[os.write(fd, chunk) :]
                if progress is not None:
                    progress(len(data))
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return InstalledFile(
        entry.name, st.st_size, st.st_mtime_ns, st.st_mode & 0o7777, digest.hexdigest()
    )


def stage_version_file(name: str, package: str, instance_id: str, staging: Path) -> InstalledFile:
    """The JSON file a manifest's ``version_file`` asks for (as the original writes it)."""
    data = json.dumps({"package_name": package, "instance_id": instance_id}).encode()
    dest = staging / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, _OPEN_FLAGS, 0o444)
    try:
        os.write(fd, data)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return InstalledFile(
        name, st.st_size, st.st_mtime_ns, st.st_mode & 0o7777, hashlib.sha256(data).hexdigest()
    )
