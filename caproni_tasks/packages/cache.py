"""The instance cache: package files shared by every root and project of a user.

Files are stored as ``<dir>/<instance id>``. A download streams into a private
temporary file in the same directory (the repository checks the hash as bytes arrive)
and is renamed into place, so readers only ever see complete, verified files. Next to
each file a small ``<instance id>.ok`` records its size, mtime and inode right after
verification; using an entry re-hashes the file only when that stat no longer matches
(hashing 100 MB costs about as much as extracting it, so doing it on every use would
double a warm install). Content corruption the stat does not reveal is still caught:
every zip member is CRC-checked while it is extracted, and the installer then discards
the entry and fetches it once more.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caproni_tasks.packages.repository import Repository

__all__ = ["InstanceCache", "default_cache_dir", "file_matches_instance_id"]

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_STALE_TEMP_SECONDS = 24 * 3600


def default_cache_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("caproni-tasks") / "instances"


def file_matches_instance_id(path: Path, instance_id: str) -> bool:
    """Whether the file hashes to ``instance_id`` (with that ID's own algorithm)."""
    from caproni_tasks.packages.format import PackageFormatError, instance_id_of_file

    try:
        return instance_id_of_file(path, template=instance_id) == instance_id
    except PackageFormatError:
        return False


class InstanceCache:
    """``cache.get(repo, package, instance_id)`` → the path of a verified package file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_of(self, instance_id: str) -> Path:
        if not _ID_RE.match(instance_id):
            raise ValueError(f"not a valid instance ID for the cache: {instance_id!r}")
        return self.directory / instance_id

    def lookup(self, instance_id: str) -> Path | None:
        """The cached file if present and still verified (re-hashed when its stat changed)."""
        path = self.path_of(instance_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        marker = self._marker(instance_id)
        try:
            seen = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            seen = None
        if seen == _stat_key(st):
            return path
        if file_matches_instance_id(path, instance_id):
            self._mark_verified(instance_id, path)
            return path
        self.discard(instance_id)
        return None

    def get(
        self,
        repo: Repository,
        package: str,
        instance_id: str,
        progress: Callable[[int], None] | None = None,
        on_download: Callable[[], None] | None = None,
    ) -> Path:
        """Return the cached file, downloading it first when absent or corrupt.

        ``on_download`` is called just before a download starts (to show a progress bar).
        """
        found = self.lookup(instance_id)
        if found is not None:
            return found
        if on_download is not None:
            on_download()
        return self.download(repo, package, instance_id, progress)

    def download(
        self,
        repo: Repository,
        package: str,
        instance_id: str,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        final = self.path_of(instance_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        tmp = self.directory / f".tmp-{instance_id[:12]}-{secrets.token_hex(6)}"
        try:
            repo.fetch_instance(package, instance_id, tmp, progress)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self._mark_verified(instance_id, final)
        return final

    def discard(self, instance_id: str) -> None:
        self._marker(instance_id).unlink(missing_ok=True)
        self.path_of(instance_id).unlink(missing_ok=True)

    def _marker(self, instance_id: str) -> Path:
        return self.directory / f"{instance_id}.ok"

    def _mark_verified(self, instance_id: str, path: Path) -> None:
        marker = self._marker(instance_id)
        tmp = marker.with_name(f".{marker.name}.{secrets.token_hex(4)}")
        try:
            tmp.write_text(json.dumps(_stat_key(path.stat())), encoding="utf-8")
            os.replace(tmp, marker)
        except OSError:
            tmp.unlink(missing_ok=True)  # only an optimisation: next use re-hashes

    def _remove_stale_temps(self) -> None:
        """Downloads cut short by a killed process leave hidden temp files (ours and the
        repository's); drop those older than a day (younger ones may be in progress)."""
        cutoff = time.time() - _STALE_TEMP_SECONDS
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    continue


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]
