"""What a package repository is: the `Repository` protocol, its errors and options.

A repository maps versions (refs such as ``latest``, tags such as ``version:1.2``, or
instance IDs) to instance IDs, and serves instance files. The backends that implement
it (a directory, a static HTTP server, a CIPD service) live side by side in
`caproni_tasks.packages.backends`, which opens one from a URL; this module imports
none of them. The layout the directory and static backends share is in
`caproni_tasks.packages.index`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "AmbiguousVersionError",
    "BackendUnavailableError",
    "HashMismatchError",
    "InstanceInfo",
    "InstanceNotFoundError",
    "NetworkOptions",
    "PackageDescription",
    "PackageNotFoundError",
    "ReadOnlyRepositoryError",
    "Repository",
    "RepositoryError",
    "UnsupportedOperationError",
    "VersionNotFoundError",
]


class RepositoryError(Exception):
    """A repository could not answer. ``error_code`` is the CIPD JSON-output code."""

    error_code = "backend_unavailable_error"


class BackendUnavailableError(RepositoryError):
    error_code = "backend_unavailable_error"


class PackageNotFoundError(RepositoryError):
    error_code = "invalid_version_error"


class VersionNotFoundError(RepositoryError):
    error_code = "invalid_version_error"


class AmbiguousVersionError(RepositoryError):
    """A tag attached to more than one instance (the original refuses to guess)."""

    error_code = "invalid_version_error"


class InstanceNotFoundError(RepositoryError):
    error_code = "invalid_version_error"


class HashMismatchError(RepositoryError):
    error_code = "hash_mismatch_error"


class UnsupportedOperationError(RepositoryError):
    """The backend cannot do this at all (e.g. list the packages of a static server)."""

    error_code = "bad_argument_error"


class ReadOnlyRepositoryError(RepositoryError):
    error_code = "bad_argument_error"


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    registered_at: str  # RFC 3339, UTC
    size: int
    refs: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageDescription:
    package: str
    instances: tuple[InstanceInfo, ...]  # oldest first
    refs: Mapping[str, str] = field(default_factory=dict)  # ref -> instance ID
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # tag -> instance IDs


@runtime_checkable
class Repository(Protocol):
    """What every backend answers. A capability a backend lacks is an answer, not a
    missing method: `known_size` says None, a read-only backend's `writable` is False
    and its writes raise `ReadOnlyRepositoryError`, a backend that cannot enumerate its
    packages raises `UnsupportedOperationError` from `packages`."""

    @property
    def url(self) -> str: ...

    @property
    def writable(self) -> bool:
        """Whether `register_instance`, `set_ref` and `attach_tags` can succeed."""
        ...

    def resolve_version(self, package: str, version: str) -> str:
        """The instance ID that ``version`` names (an instance ID must exist)."""
        ...

    def fetch_instance(
        self,
        package: str,
        instance_id: str,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream the instance file to ``dest``, checking its hash as bytes arrive.

        ``progress`` is called with the number of bytes received since the last call.
        On any failure ``dest`` does not exist afterwards.
        """
        ...

    def describe(self, package: str) -> PackageDescription: ...

    def known_size(self, package: str, instance_id: str) -> int | None:
        """The instance file's size if known without a request of its own (progress
        bars), else None."""
        ...

    def packages(self) -> list[str]:
        """Every package the repository holds (that the caller may see), sorted."""
        ...

    def search_instances(self, package: str, tags: Sequence[str]) -> list[str]:
        """Instance IDs of ``package`` that carry every one of ``tags``, newest first
        (none for a package that does not exist)."""
        ...

    def register_instance(self, package_file: Path) -> str:
        """Add a package file (its name comes from its manifest); return its instance ID."""
        ...

    def set_ref(self, package: str, ref: str, instance_id: str) -> None: ...

    def attach_tags(self, package: str, instance_id: str, tags: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class NetworkOptions:
    """Limits for repositories behind a server, in seconds (docs/repository.md): to
    connect, without a byte from the server, for a whole read or download (retries
    included); and how many times a transient failure is retried.

    For CIPD services: more root URLs that speak the CIPD protocol (``cipd_services``),
    the bearer token or the command printing one (never shown by ``repr``), and the
    cache directory where resolved tags are remembered (none: in memory only)."""

    connect_timeout: float = 10.0
    stall_timeout: float = 30.0
    deadline: float = 1800.0
    retries: int = 2
    cipd_services: tuple[str, ...] = ()
    auth_token: str | None = field(default=None, repr=False)
    auth_token_command: str | None = None
    cache_dir: Path | None = None
