"""A repository that is a plain directory: the embedded default, read and write.

Layout: `caproni_tasks.packages.index`. Files beside the index::

    <root>/<package>/@index.lock               serialises writers of that package

Writers are safe against each other and against readers: instance files and the index
appear by atomic rename (readers see the old or the new file, never a partial one);
index updates read-modify-write under a per-package `FileLock`; an instance file is in
place before the index names it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from caproni_tasks.atomicfile import fsync_directory, write_atomic
from caproni_tasks.ensure import (
    ValidationError,
    validate_instance_id,
    validate_ref,
    validate_tag,
)
from caproni_tasks.packages.backends import Backend
from caproni_tasks.packages.format import PackageReader, instance_id_of_digest
from caproni_tasks.packages.index import (
    CHUNK,
    INDEX_FILE,
    INSTANCES_DIR,
    LOCK_FILE,
    IndexedRepository,
    InstanceRecord,
    PackageIndex,
    check_package_name,
    copy_verified,
    now,
)
from caproni_tasks.packages.locking import FileLock
from caproni_tasks.packages.repository import (
    BackendUnavailableError,
    InstanceNotFoundError,
    NetworkOptions,
    PackageNotFoundError,
    RepositoryError,
)

__all__ = ["BACKEND", "LocalRepository"]


class LocalRepository(IndexedRepository):
    """The repository in directory ``root`` (created on first write)."""

    def __init__(self, root: Path | str, *, lock_timeout: float = 120.0) -> None:
        self._root = Path(root).expanduser().absolute()
        self.lock_timeout = lock_timeout

    @classmethod
    def from_url(cls, url: str) -> LocalRepository:
        """Open ``file:///abs/path`` (or ``file://localhost/abs/path``)."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            raise RepositoryError(f"not a file URL: {url!r}")
        if parts.netloc not in ("", "localhost"):
            raise RepositoryError(
                f"unsupported file URL {url!r}: only local paths (file:///path) are allowed"
            )
        if not parts.path:
            raise RepositoryError(f"file URL {url!r} has no path")
        return cls(Path(url2pathname(parts.path)))

    @property
    def url(self) -> str:
        return self._root.as_uri()

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"LocalRepository({str(self._root)!r})"

    # paths

    def package_dir(self, package: str) -> Path:
        check_package_name(package)
        return self._root.joinpath(*package.split("/"))

    def index_path(self, package: str) -> Path:
        return self.package_dir(package) / INDEX_FILE

    def instance_path(self, package: str, instance_id: str) -> Path:
        """Where the instance file lives (it may not exist)."""
        try:
            validate_instance_id(instance_id)
        except ValidationError as error:
            raise InstanceNotFoundError(str(error)) from None
        return self.package_dir(package) / INSTANCES_DIR / instance_id

    # reading

    def read_index(self, package: str) -> PackageIndex:
        path = self.index_path(package)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if not self._root.is_dir():
                raise BackendUnavailableError(
                    f"repository directory {self._root} does not exist"
                ) from None
            raise PackageNotFoundError(f'no such package "{package}" in {self.url}') from None
        except OSError as error:
            raise BackendUnavailableError(f"cannot read {path}: {error}") from None
        return PackageIndex.from_json(raw, package=package, source=str(path))

    def known_size(self, package: str, instance_id: str) -> int | None:
        """The instance file's size from the index (a local read), None if unknown."""
        try:
            return self.read_index(package).size_of(instance_id)
        except RepositoryError:
            return None

    @property
    def writable(self) -> bool:
        return True

    def packages(self) -> list[str]:
        """Every package in the repository, sorted; a missing repository is an error
        (an empty list would hide a mistyped path)."""
        if not self._root.is_dir():
            what = "is not a directory" if self._root.exists() else "does not exist"
            raise RepositoryError(
                f"repository {self._root} {what}: check the path, or publish a package "
                "into it first (pkg.create / pkg.register)"
            )
        found = [
            index.parent.relative_to(self._root).as_posix()
            for index in self._root.rglob(INDEX_FILE)
            if INSTANCES_DIR not in index.parts
        ]
        return sorted(found)

    def fetch_instance(
        self,
        package: str,
        instance_id: str,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        source = self.instance_path(package, instance_id)
        try:
            stream = open(source, "rb")  # noqa: SIM115 - closed below, after the copy
        except FileNotFoundError:
            Path(dest).unlink(missing_ok=True)
            raise InstanceNotFoundError(
                f'no such instance "{instance_id}" of package "{package}" in {self.url}'
            ) from None
        except OSError as error:
            Path(dest).unlink(missing_ok=True)
            raise BackendUnavailableError(f"cannot read {source}: {error}") from None
        with stream:
            try:
                copy_verified(
                    stream,
                    Path(dest),
                    instance_id,
                    origin=str(source),
                    progress=progress,
                    expected_size=os.fstat(stream.fileno()).st_size,
                )
            except OSError as error:
                raise BackendUnavailableError(f"cannot copy {source} to {dest}: {error}") from None

    # writing

    def _update(self, package: str, change: Callable[[PackageIndex], bool]) -> None:
        """Read-modify-write the package index under its lock; ``change`` says if it did."""
        pkg_dir = self.package_dir(package)
        pkg_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(pkg_dir / LOCK_FILE, timeout=self.lock_timeout):
            try:
                index = self.read_index(package)
            except PackageNotFoundError:
                index = PackageIndex(package)
            if change(index):
                write_atomic(pkg_dir / INDEX_FILE, index.to_json())

    def register_instance(self, package_file: Path) -> str:
        """Add a package file (validated first; its manifest names the package).

        Idempotent: registering the same file again changes nothing. Raises
        `PackageFormatError` for a file that is not a valid package.
        """
        with PackageReader(package_file) as reader:
            package = reader.manifest.package_name
        instances = self.package_dir(package) / INSTANCES_DIR
        try:
            instances.mkdir(parents=True, exist_ok=True)
            iid, size = self._import_file(Path(package_file), instances)
        except OSError as error:
            raise BackendUnavailableError(
                f"cannot store an instance of {package} in the repository {self._root}: "
                f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
            ) from None

        def add(index: PackageIndex) -> bool:
            if index.has_instance(iid):
                return False
            index.instances.append(InstanceRecord(iid, now(), size))
            return True

        self._update(package, add)
        return iid

    def _import_file(self, package_file: Path, instances: Path) -> tuple[str, int]:
        """Copy into ``instances`` under a temporary name, hash, rename to the ID."""
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=instances)
        tmp = Path(tmp_name)
        try:
            with open(package_file, "rb") as source, os.fdopen(fd, "wb") as out:
                hasher = hashlib.sha256()
                size = 0
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            iid = instance_id_of_digest(hasher)
            os.chmod(tmp, 0o444)
            os.replace(tmp, instances / iid)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_directory(instances)
        return iid, size

    def _require_instance(self, index: PackageIndex, instance_id: str) -> None:
        if not index.has_instance(instance_id):
            raise InstanceNotFoundError(
                f'no such instance "{instance_id}" of package "{index.package}" in {self.url}'
            )

    def set_ref(self, package: str, ref: str, instance_id: str) -> None:
        """Point ``ref`` at a registered instance (moving it if it exists).

        Raises the ensure validators' `ValidationError` for a bad ref.
        """
        validate_ref(ref)

        def point(index: PackageIndex) -> bool:
            self._require_instance(index, instance_id)
            if index.refs.get(ref) == instance_id:
                return False
            index.refs[ref] = instance_id
            return True

        self._update_existing(package, point)

    def attach_tags(self, package: str, instance_id: str, tags: Sequence[str]) -> None:
        """Attach ``tags`` to a registered instance (already attached ones are kept)."""
        for tag in tags:
            validate_tag(tag)

        def attach(index: PackageIndex) -> bool:
            self._require_instance(index, instance_id)
            changed = False
            for tag in _unique(tags):
                owners = index.tags.setdefault(tag, [])
                if instance_id not in owners:
                    owners.append(instance_id)
                    changed = True
            return changed

        self._update_existing(package, attach)

    def _update_existing(self, package: str, change: Callable[[PackageIndex], bool]) -> None:
        self.read_index(package)  # a clear "no such package" before creating anything
        self._update(package, change)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _open(url: str, network: NetworkOptions) -> LocalRepository:
    return LocalRepository.from_url(url)  # a directory needs no network limits


BACKEND = Backend("directory", ("file",), _open)
