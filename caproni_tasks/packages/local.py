"""A repository that is a plain directory: the embedded default, read and write.

Layout (see `caproni_tasks.packages.repository`)::

    <root>/<package>/@index.json               the package index (`PackageIndex`)
    <root>/<package>/@instances/<instance id>  package files, read-only
    <root>/<package>/@index.lock               serialises writers of that package

Writers are safe against each other and against readers: instance files and the index
appear by atomic rename (readers see the old or the new file, never a partial one);
index updates read-modify-write under a per-package `FileLock`; an instance file is in
place before the index names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from caproni_tasks.atomicfile import fsync_directory, write_atomic
from caproni_tasks.ensure import (
    ValidationError,
    validate_instance_id,
    validate_package_name,
    validate_ref,
    validate_tag,
    version_kind,
)
from caproni_tasks.jsonfile import JsonShapeError, load_object
from caproni_tasks.packages.format import (
    PackageReader,
    hasher_for,
    instance_id_of_digest,
)
from caproni_tasks.packages.locking import FileLock
from caproni_tasks.packages.repository import (
    AmbiguousVersionError,
    BackendUnavailableError,
    HashMismatchError,
    InstanceInfo,
    InstanceNotFoundError,
    PackageDescription,
    PackageNotFoundError,
    RepositoryError,
    VersionNotFoundError,
)

__all__ = [
    "INDEX_FILE",
    "INDEX_FORMAT",
    "INSTANCES_DIR",
    "LOCK_FILE",
    "InstanceRecord",
    "LocalRepository",
    "PackageIndex",
    "check_package_name",
    "copy_verified",
]

INDEX_FILE = "@index.json"
INSTANCES_DIR = "@instances"
LOCK_FILE = "@index.lock"
INDEX_FORMAT = 1
CHUNK = 1 << 20
AMBIGUOUS_TAG = "ambiguity when resolving the tag, more than one instance has it"


def check_package_name(package: str) -> None:
    """Refuse names that are not package names (they become paths in the layout)."""
    try:
        validate_package_name(package)
    except ValidationError as error:
        raise PackageNotFoundError(str(error)) from None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the index -------------------------------------------------------------------------


@dataclass
class InstanceRecord:
    instance_id: str
    registered_at: str
    size: int


@dataclass
class PackageIndex:
    """The content of one ``@index.json``: every version question about one package."""

    package: str
    instances: list[InstanceRecord] = field(default_factory=list)  # oldest first
    refs: dict[str, str] = field(default_factory=dict)  # ref -> instance ID
    tags: dict[str, list[str]] = field(default_factory=dict)  # tag -> instance IDs

    def has_instance(self, instance_id: str) -> bool:
        return any(r.instance_id == instance_id for r in self.instances)

    def size_of(self, instance_id: str) -> int | None:
        """The recorded size of an instance file (for progress bars), if listed."""
        for record in self.instances:
            if record.instance_id == instance_id:
                return record.size
        return None

    def resolve(self, version: str, *, where: str) -> str:
        """The instance ID ``version`` names; ``where`` (the repository) is for messages."""
        kind = version_kind(version)
        if kind == "instance_id":
            if self.has_instance(version):
                return version
            raise InstanceNotFoundError(
                f'no such instance "{version}" of package "{self.package}" in {where}'
            )
        if kind == "ref":
            try:
                return self.refs[version]
            except KeyError:
                raise VersionNotFoundError(
                    f'no such ref "{version}" for package "{self.package}" in {where}'
                ) from None
        if kind == "tag":
            owners = self.tags.get(version, [])
            if len(owners) > 1:
                raise AmbiguousVersionError(AMBIGUOUS_TAG)
            if not owners:
                raise VersionNotFoundError(
                    f'no such tag "{version}" for package "{self.package}" in {where}'
                )
            return owners[0]
        raise VersionNotFoundError(f'bad version "{version}": not an instance ID, a ref or a tag')

    def describe(self) -> PackageDescription:
        refs_of: dict[str, list[str]] = {}
        for ref, iid in sorted(self.refs.items()):
            refs_of.setdefault(iid, []).append(ref)
        tags_of: dict[str, list[str]] = {}
        for tag, owners in sorted(self.tags.items()):
            for iid in owners:
                tags_of.setdefault(iid, []).append(tag)
        instances = tuple(
            InstanceInfo(
                instance_id=r.instance_id,
                registered_at=r.registered_at,
                size=r.size,
                refs=tuple(refs_of.get(r.instance_id, ())),
                tags=tuple(tags_of.get(r.instance_id, ())),
            )
            for r in self.instances
        )
        return PackageDescription(
            package=self.package,
            instances=instances,
            refs=dict(sorted(self.refs.items())),
            tags={tag: tuple(owners) for tag, owners in sorted(self.tags.items())},
        )

    def to_json(self) -> bytes:
        data = {
            "format": INDEX_FORMAT,
            "package": self.package,
            "instances": [
                {"instance_id": r.instance_id, "registered_at": r.registered_at, "size": r.size}
                for r in self.instances
            ],
            "refs": dict(sorted(self.refs.items())),
            "tags": {tag: owners for tag, owners in sorted(self.tags.items())},
        }
        return (json.dumps(data, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, *, package: str, source: str) -> PackageIndex:
        """Parse an index; anything malformed is a `RepositoryError` naming ``source``."""

        def bad(why: str) -> RepositoryError:
            return RepositoryError(f"corrupt package index {source}: {why}")

        try:
            data = load_object(raw, f"corrupt package index {source}")
        except JsonShapeError as error:
            raise RepositoryError(str(error)) from None
        if data.get("format") != INDEX_FORMAT:
            raise bad(f"unsupported format {data.get('format')!r} (expected {INDEX_FORMAT})")
        if data.get("package") != package:
            raise bad(f"it describes package {data.get('package')!r}, expected {package!r}")
        try:
            instances = [
                InstanceRecord(str(r["instance_id"]), str(r["registered_at"]), int(r["size"]))
                for r in _list(data.get("instances", []))
            ]
            refs = {str(k): str(v) for k, v in _dict(data.get("refs", {})).items()}
            tags = {
                str(k): [str(i) for i in _list(v)] for k, v in _dict(data.get("tags", {})).items()
            }
        except (KeyError, TypeError, ValueError) as error:
            raise bad(f"unexpected structure ({type(error).__name__}: {error})") from None
        return cls(package, instances, refs, tags)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _dict(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


# --- streaming with verification -------------------------------------------------------


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def copy_verified(
    source: Readable,
    dest: Path,
    instance_id: str,
    *,
    origin: str,
    progress: Callable[[int], None] | None = None,
    expected_size: int | None = None,
) -> None:
    """Stream ``source`` into ``dest`` hashing as bytes arrive; keep it only if it matches.

    Writes a temporary file beside ``dest`` and renames it, so ``dest`` is either the
    verified file or absent. ``origin`` names the source in errors. A short stream
    (fewer than ``expected_size`` bytes) is a `BackendUnavailableError`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    hasher = hasher_for(instance_id)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        if expected_size is not None and received != expected_size:
            raise BackendUnavailableError(
                f"truncated download of {origin}: got {received} of {expected_size} bytes"
            )
        actual = instance_id_of_digest(hasher)
        if actual != instance_id:
            raise HashMismatchError(
                f"hash mismatch for {origin}: expected instance {instance_id}, "
                f"the data hashes to {actual}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        dest.unlink(missing_ok=True)
        raise


# --- the repository --------------------------------------------------------------------


class LocalRepository:
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

    def resolve_version(self, package: str, version: str) -> str:
        return self.read_index(package).resolve(version, where=self.url)

    def known_size(self, package: str, instance_id: str) -> int | None:
        """The instance file's size from the index (a local read), None if unknown."""
        try:
            return self.read_index(package).size_of(instance_id)
        except RepositoryError:
            return None

    def describe(self, package: str) -> PackageDescription:
        return self.read_index(package).describe()

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
            index.instances.append(InstanceRecord(iid, _now(), size))
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
