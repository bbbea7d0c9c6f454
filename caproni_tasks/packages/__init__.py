"""Where packages come from and how they land on disk.

- `format`: the package file (build, hash, validating reader);
- `repository`, `local`, `http`: repositories opened by URL scheme;
- `cache`: instance files shared by every root, verified;
- `installer` (with `state`, `extract`, `progress`): plan → fetch → stage → commit;
- `pinning`: ensure file + repository or versions file → what to install;
- `locking`: the inter-process lock both writers use.

Names are imported on first access, so ``import caproni_tasks.packages`` stays cheap
(no zipfile, no HTTP client) for ``invoke --list`` and no-op runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caproni_tasks.packages.backends import Backend, open_repository, register_backend
    from caproni_tasks.packages.backends.directory import LocalRepository
    from caproni_tasks.packages.backends.static_http import HttpRepository
    from caproni_tasks.packages.cache import InstanceCache, default_cache_dir
    from caproni_tasks.packages.format import (
        FileEntry,
        Manifest,
        PackageFormatError,
        PackageReader,
        build_package,
        instance_id_of_file,
    )
    from caproni_tasks.packages.installer import (
        Action,
        ActionKind,
        Desired,
        Installer,
        InstallError,
        InstallResult,
        Plan,
    )
    from caproni_tasks.packages.locking import FileLock, LockTimeoutError
    from caproni_tasks.packages.pinning import EnsureSource, PinningError
    from caproni_tasks.packages.repository import (
        AmbiguousVersionError,
        BackendUnavailableError,
        HashMismatchError,
        InstanceInfo,
        InstanceNotFoundError,
        PackageDescription,
        PackageNotFoundError,
        ReadOnlyRepositoryError,
        Repository,
        RepositoryError,
        VersionNotFoundError,
    )
    from caproni_tasks.packages.state import InstalledFile, RootState

_EXPORTS: dict[str, str] = {
    "InstanceCache": "cache",
    "default_cache_dir": "cache",
    "FileEntry": "format",
    "Manifest": "format",
    "PackageFormatError": "format",
    "PackageReader": "format",
    "build_package": "format",
    "instance_id_of_file": "format",
    "HttpRepository": "backends.static_http",
    "Action": "installer",
    "ActionKind": "installer",
    "Desired": "installer",
    "InstallError": "installer",
    "InstallResult": "installer",
    "Installer": "installer",
    "Plan": "installer",
    "LocalRepository": "backends.directory",
    "FileLock": "locking",
    "LockTimeoutError": "locking",
    "EnsureSource": "pinning",
    "PinningError": "pinning",
    "AmbiguousVersionError": "repository",
    "BackendUnavailableError": "repository",
    "HashMismatchError": "repository",
    "InstanceInfo": "repository",
    "InstanceNotFoundError": "repository",
    "PackageDescription": "repository",
    "PackageNotFoundError": "repository",
    "ReadOnlyRepositoryError": "repository",
    "Repository": "repository",
    "RepositoryError": "repository",
    "VersionNotFoundError": "repository",
    "UnsupportedOperationError": "repository",
    "Backend": "backends",
    "open_repository": "backends",
    "register_backend": "backends",
    "InstalledFile": "state",
    "RootState": "state",
}

__all__ = [
    "Action",
    "ActionKind",
    "AmbiguousVersionError",
    "Backend",
    "BackendUnavailableError",
    "Desired",
    "EnsureSource",
    "FileEntry",
    "FileLock",
    "HashMismatchError",
    "HttpRepository",
    "InstallError",
    "InstallResult",
    "InstalledFile",
    "Installer",
    "InstanceCache",
    "InstanceInfo",
    "InstanceNotFoundError",
    "LocalRepository",
    "LockTimeoutError",
    "Manifest",
    "PackageDescription",
    "PackageFormatError",
    "PackageNotFoundError",
    "PackageReader",
    "PinningError",
    "Plan",
    "ReadOnlyRepositoryError",
    "Repository",
    "RepositoryError",
    "RootState",
    "UnsupportedOperationError",
    "VersionNotFoundError",
    "build_package",
    "default_cache_dir",
    "instance_id_of_file",
    "open_repository",
    "register_backend",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
