"""The repository layout every backend shares: the package index and verified copies.

Layout, so anyone can host a repository (a directory, a static web server, a bucket)::

    <root>/<package name>/@index.json              refs, tags and instances of one package
    <root>/<package name>/@instances/<instance id>  the package files (zip), by instance ID

Package names never contain ``@``, so these names cannot collide with a package path.
One ``@index.json`` answers every version question about its package, so resolving a
version costs at most one request per package. `copy_verified` is how every backend
lands an instance file: streamed, hashed as bytes arrive, kept only if it matches.
"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from caproni_tasks.ensure import ValidationError, validate_package_name, version_kind
from caproni_tasks.jsonfile import JsonShapeError, load_object
from caproni_tasks.packages.format import hasher_for, instance_id_of_digest
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
    "AMBIGUOUS_TAG",
    "CHUNK",
    "INDEX_FILE",
    "INDEX_FORMAT",
    "INSTANCES_DIR",
    "LOCK_FILE",
    "IndexedRepository",
    "InstanceRecord",
    "PackageIndex",
    "Readable",
    "check_package_name",
    "copy_verified",
    "now",
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


def now() -> str:
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

    def search(self, tags: Sequence[str]) -> list[str]:
        """Instance IDs carrying every one of ``tags``, newest first."""
        wanted = [set(self.tags.get(tag, ())) for tag in tags]
        return [
            r.instance_id
            for r in reversed(self.instances)
            if all(r.instance_id in owners for owners in wanted)
        ]

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


class IndexedRepository(ABC):
    """The version questions of a backend that keeps this layout, each answered from the
    package's index: the backend supplies `url` and `read_index`."""

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def read_index(self, package: str) -> PackageIndex:
        """The package's index; `PackageNotFoundError` when the package does not exist."""

    def resolve_version(self, package: str, version: str) -> str:
        return self.read_index(package).resolve(version, where=self.url)

    def describe(self, package: str) -> PackageDescription:
        return self.read_index(package).describe()

    def search_instances(self, package: str, tags: Sequence[str]) -> list[str]:
        try:
            return self.read_index(package).search(tags)
        except PackageNotFoundError:
            return []


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
