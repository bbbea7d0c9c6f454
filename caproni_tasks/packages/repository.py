"""Where packages come from: the `Repository` contract and openers by URL scheme.

A repository maps versions (refs such as ``latest``, tags such as ``version:1.2``, or
instance IDs) to instance IDs, and serves instance files. It is opened from a URL
through a registry of openers, like httpx picks a transport: ``file://`` or a plain
path is a local directory (read and write); ``http(s)://`` is the same layout served
statically (read only), unless it names a CIPD service; ``cipd+https://`` and
``cipd+http://`` always speak the CIPD protocol (read and write;
`caproni_tasks.packages.backends.cipd` states the rule). Third parties add schemes with
`register_opener`.

On-disk (and on-the-wire) layout, so anyone can host a repository::

    <root>/<package name>/@index.json              refs, tags and instances of one package
    <root>/<package name>/@instances/<instance id>  the package files (zip), by instance ID

Package names never contain ``@``, so these names cannot collide with a package path.
One ``@index.json`` answers every version question about its package, so resolving a
version costs at most one request per package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

__all__ = [
    "AmbiguousVersionError",
    "BackendUnavailableError",
    "HashMismatchError",
    "InstanceInfo",
    "InstanceNotFoundError",
    "NetworkOptions",
    "Opener",
    "PackageDescription",
    "PackageNotFoundError",
    "ReadOnlyRepositoryError",
    "Repository",
    "RepositoryError",
    "UnsupportedOperationError",
    "VersionNotFoundError",
    "open_repository",
    "register_opener",
    "schemes",
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


Opener = Callable[[str], Repository]
_OPENERS: dict[str, Opener] = {}
_TAKES_NETWORK: set[str] = set()


def register_opener(scheme: str, opener: Opener, *, takes_network: bool = False) -> None:
    """Make ``open_repository`` hand URLs of ``scheme`` (case-insensitive) to ``opener``.

    With ``takes_network``, it is called as ``opener(url, network=NetworkOptions(...))``.
    """
    _OPENERS[scheme.lower()] = opener
    if takes_network:
        _TAKES_NETWORK.add(scheme.lower())
    else:
        _TAKES_NETWORK.discard(scheme.lower())


def schemes() -> list[str]:
    return sorted(_OPENERS)


def open_repository(
    url: str, *, base_dir: Path | None = None, network: NetworkOptions | None = None
) -> Repository:
    """Open the repository at ``url``; a plain path (relative to ``base_dir``) is local.

    ``network`` sets the limits of a repository behind a server (default: `NetworkOptions`).
    """
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as error:  # e.g. an unclosed "[" of an IPv6 host
        raise RepositoryError(f"bad repository URL {url!r}: {error}") from None
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter
        path = Path(url).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return _OPENERS["file"](path.absolute().as_uri())
    try:
        opener = _OPENERS[scheme]
    except KeyError:
        raise RepositoryError(
            f"unsupported repository URL {url!r}: no opener for scheme {scheme!r} "
            f"(known: {', '.join(schemes())})"
        ) from None
    if scheme in _TAKES_NETWORK:
        return opener(url, network=network or NetworkOptions())  # type: ignore[call-arg]
    return opener(url)


def _open_local(url: str) -> Repository:
    from caproni_tasks.packages.backends.directory import LocalRepository

    return LocalRepository.from_url(url)


def _open_http(url: str, *, network: NetworkOptions | None = None) -> Repository:
    from caproni_tasks.packages.backends.cipd import cipd_service_url
    from caproni_tasks.packages.backends.static_http import HttpRepository

    options = network or NetworkOptions()
    if cipd_service_url(url, options.cipd_services) is not None:
        return _open_cipd(url, network=options)
    return HttpRepository(
        url,
        connect_timeout=options.connect_timeout,
        stall_timeout=options.stall_timeout,
        deadline=options.deadline,
        retries=options.retries,
    )


def _open_cipd(url: str, *, network: NetworkOptions | None = None) -> Repository:
    from caproni_tasks.packages.backends.cipd import CipdRepository

    return CipdRepository(url, network=network or NetworkOptions())


register_opener("file", _open_local)
register_opener("http", _open_http, takes_network=True)
register_opener("https", _open_http, takes_network=True)
register_opener("cipd+http", _open_cipd, takes_network=True)
register_opener("cipd+https", _open_cipd, takes_network=True)
