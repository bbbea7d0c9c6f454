"""Repository backends side by side, each declared the same way and opened by URL.

A backend is a `Backend`: its name, the URL schemes it answers, an opener
``open(url, network) -> Repository`` and, for a scheme two backends share, a ``claims``
test that decides from the URL alone (no request). The built-in ones are
`directory` (``file://`` and plain paths), `cipd` (``cipd+http(s)://``, the default
service and ``caproni.cipd_services``; it claims those ``http(s)`` URLs) and
`static_http` (every other ``http(s)://``). Each module defines ``BACKEND``; it is
imported only when a URL of its schemes is opened, so ``invoke --list`` imports none.
Third parties call `register_backend` (tried before the built-in ones). The
`caproni_tasks.packages.repository` protocol module imports no backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from caproni_tasks.packages.repository import NetworkOptions, Repository, RepositoryError

__all__ = ["Backend", "backends", "open_repository", "register_backend", "schemes"]


def _always(url: str, network: NetworkOptions) -> bool:
    return True


@dataclass(frozen=True)
class Backend:
    name: str
    schemes: tuple[str, ...]
    open: Callable[[str, NetworkOptions], Repository]
    #: For a scheme several backends answer: does this one take ``url``?
    claims: Callable[[str, NetworkOptions], bool] = _always


#: Built-in backends by module, in the order they are asked (cipd claims some http URLs
#: before static_http takes the rest).
_BUILTIN = ("cipd", "directory", "static_http")
_BUILTIN_SCHEMES = {
    "cipd": ("cipd+http", "cipd+https", "http", "https"),
    "directory": ("file",),
    "static_http": ("http", "https"),
}
_REGISTERED: list[Backend] = []
_LOADED: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Make `open_repository` offer URLs of ``backend.schemes`` to ``backend`` first."""
    _REGISTERED.insert(0, backend)


def _builtin(name: str) -> Backend:
    if name not in _LOADED:
        module = importlib.import_module(f"{__name__}.{name}")
        backend = module.BACKEND
        if not isinstance(backend, Backend):
            raise TypeError(f"{module.__name__}.BACKEND is not a Backend")
        _LOADED[name] = backend
    return _LOADED[name]


def _candidates(scheme: str) -> list[Backend]:
    found = [b for b in _REGISTERED if scheme in b.schemes]
    found += [_builtin(n) for n in _BUILTIN if scheme in _BUILTIN_SCHEMES[n]]
    return found


def schemes() -> list[str]:
    known = {s for b in _REGISTERED for s in b.schemes}
    known.update(s for names in _BUILTIN_SCHEMES.values() for s in names)
    return sorted(known)


def backends() -> list[str]:
    """Names of every backend, registered ones first."""
    return [b.name for b in _REGISTERED] + list(_BUILTIN)


def open_repository(
    url: str, *, base_dir: Path | None = None, network: NetworkOptions | None = None
) -> Repository:
    """Open the repository at ``url``; a plain path (relative to ``base_dir``) is local.

    ``network`` sets the limits of a repository behind a server (default: `NetworkOptions`).
    """
    options = network or NetworkOptions()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as error:  # e.g. an unclosed "[" of an IPv6 host
        raise RepositoryError(f"bad repository URL {url!r}: {error}") from None
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter
        path = Path(url).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        url, scheme = path.absolute().as_uri(), "file"
    for backend in _candidates(scheme):
        if backend.claims(url, options):
            return backend.open(url, options)
    raise RepositoryError(
        f"unsupported repository URL {url!r}: no backend for scheme {scheme!r} "
        f"(known: {', '.join(schemes())})"
    )
