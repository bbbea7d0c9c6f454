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

Each download holds an exclusive ``flock`` on a small ``.dl@<token>.lock`` file for as
long as it runs; its temporary files (ours, and whatever the repository writes beside
the destination) are named after the same token. So a download cut short by a kill
leaves files whose lock anyone can take: the next use of the cache removes them, however
young they are, and never touches the files of a download still running (in this
process or another). Hidden files without a token (left by older versions) are removed
once a day old.

Two roots sharing the cache download an instance once: `InstanceCache.get` holds a
per-instance ``flock`` (``.inst@<instance id>.lock``) from its cache miss until the
file is in place, and whoever waited for it finds the file and uses it. Its holder
removes the lock file; one a killed holder left is removed by the next use of the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.atomicfile import write_atomic

if TYPE_CHECKING:
    from caproni_tasks.packages.repository import Repository

__all__ = ["InstanceCache", "default_cache_dir", "file_matches_instance_id"]

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_STALE_TEMP_SECONDS = 24 * 3600
_DOWNLOAD = "dl@"  # a download token's prefix (no instance ID contains "@")


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
        self._swept = False

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
        except (OSError, ValueError, RecursionError):
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
        self._sweep_once()
        found = self.lookup(instance_id)
        if found is not None:
            return found
        self.directory.mkdir(parents=True, exist_ok=True)
        # One download per instance across processes: roots sharing this cache wait for
        # the one that is fetching it, then use its file.
        with _instance_lock(self.directory, instance_id):
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
        self._sweep_once()
        with self._claim(instance_id) as tmp:
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
        record = json.dumps(_stat_key(path.stat()))
        with contextlib.suppress(OSError):  # only an optimisation: next use re-hashes
            write_atomic(self._marker(instance_id), record, durable=False)

    def _claim(self, instance_id: str) -> contextlib.AbstractContextManager[Path]:
        """A context giving a fresh temporary path for one download, with the download's
        lock held (and its lock file removed) around it."""
        return _claimed(self.directory, instance_id)

    def _sweep_once(self) -> None:
        if not self._swept:
            self._swept = True
            self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        """Remove what downloads cut short by a kill left behind: every file of a
        download whose lock is free (its writer is gone), and hidden files without a
        download token once they are a day old."""
        try:
            names = [entry.name for entry in os.scandir(self.directory)]
        except OSError:
            return
        downloads: dict[str, list[str]] = {}
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for name in names:
            if not name.startswith("."):
                continue
            if name.startswith(f".{_INSTANCE_LOCK}"):
                _remove_if_unlocked(self.directory / name)
                continue
            token = _token_of(name)
            if token is not None:
                downloads.setdefault(token, []).append(name)
                continue
            with contextlib.suppress(OSError):
                if os.stat(self.directory / name).st_mtime < cutoff:
                    os.unlink(self.directory / name)
        for token, files in downloads.items():
            self._remove_abandoned(token, files)

    def _remove_abandoned(self, token: str, files: list[str]) -> None:
        lock_path = self.directory / f".{token}.lock"
        try:
            fd: int | None = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None  # its writer finished or gave up; what is left is abandoned
        except OSError:
            return
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return  # a download in progress
            for name in files:
                if name != lock_path.name:
                    with contextlib.suppress(OSError):
                        os.unlink(self.directory / name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
        finally:
            if fd is not None:
                os.close(fd)


@contextlib.contextmanager
def _claimed(directory: Path, instance_id: str) -> Iterator[Path]:
    while True:
        token = f"{_DOWNLOAD}{instance_id[:12]}-{secrets.token_hex(6)}"
        lock_path = directory / f".{token}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A sweeper may have locked and removed the new file before we locked it.
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except OSError:
            pass
        os.close(fd)
    try:
        yield directory / f".{token}"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


#: The prefix of an instance's lock file, ``.inst@<instance id>.lock``.
_INSTANCE_LOCK = "inst@"


@contextlib.contextmanager
def _instance_lock(directory: Path, instance_id: str) -> Iterator[None]:
    """Hold the exclusive lock of one instance (blocking; Ctrl-C interrupts the wait).

    The lock file is removed by its holder when done; a waiter that then holds the lock
    of a removed file takes it again on the new one, so two holders never overlap.
    """
    path = directory / f".{_INSTANCE_LOCK}{instance_id}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _remove_if_unlocked(path: Path) -> None:
    """Remove an instance lock file nobody holds (its holder was killed). Safe: a run
    that opened it before the removal finds it gone once it holds the lock, and retries
    on a new file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # held: a download of that instance is running
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _token_of(name: str) -> str | None:
    """The download token of a hidden file of the cache (``dl@<id prefix>-<random>``):
    ``.<token>.lock``, the download's ``.<token>`` and a repository's temporary files
    beside it, named after it (e.g. ``..<token>.1x2y.part``)."""
    stem = name.lstrip(".").split(".", 1)[0]
    return stem if stem.startswith(_DOWNLOAD) else None


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]
