"""Kinds by name: built-in kinds register on import, third parties via entry points.

A third-party package adds a kind by declaring, in its ``pyproject.toml``::

    [project.entry-points."caproni_tasks.reloaders"]
    mykind = "mypackage.reloader:MyManager"

The entry point names a factory (a class or function returning a `Manager`); it is
loaded only when its kind is first asked for, so unused plugins cost nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from caproni_tasks.reloader.contract import Manager, UnknownTypeError

__all__ = ["ENTRY_POINT_GROUP", "ManagerFactory", "list_types", "new_manager", "register"]

ENTRY_POINT_GROUP = "caproni_tasks.reloaders"

ManagerFactory = Callable[[], Manager]

_factories: dict[str, ManagerFactory] = {}
_plugin_points: dict[str, object] | None = None  # kind -> importlib.metadata.EntryPoint
_lock = threading.Lock()

#: Caproni's cluster kinds: their settings load and validate, but this release has no
#: manager to run them; saying so beats a bare "unknown" for a name the user got right.
UNAVAILABLE_KINDS = {
    "mirror": "processes in a cluster workload's context, through mirrord",
    "skaffold": "`skaffold dev`",
}


def register(kind: str, factory: ManagerFactory) -> None:
    """Make ``kind`` available to `new_manager`; a later registration replaces an earlier
    one (so a project can override a built-in kind deliberately)."""
    if not kind or not kind.strip():
        raise ValueError("a reloader kind needs a non-empty name")
    with _lock:
        _factories[kind] = factory


def _entry_points() -> dict[str, object]:
    """Entry points of the plugin group, read once per process."""
    global _plugin_points
    with _lock:
        if _plugin_points is None:
            from importlib.metadata import entry_points

            _plugin_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return _plugin_points


def refresh_plugins() -> None:
    """Forget the cached entry points (after installing a plugin in a running process)."""
    global _plugin_points
    with _lock:
        _plugin_points = None


def list_types() -> list[str]:
    """Every kind that `new_manager` accepts, sorted."""
    with _lock:
        names = set(_factories)
    names.update(_entry_points())
    return sorted(names)


def _factory(kind: str) -> ManagerFactory:
    with _lock:
        factory = _factories.get(kind)
    if factory is not None:
        return factory
    point = _entry_points().get(kind)
    if point is None:
        known = ", ".join(list_types()) or "none"
        if kind in UNAVAILABLE_KINDS:
            raise UnknownTypeError(
                f"{kind!r}: the {kind} kind ({UNAVAILABLE_KINDS[kind]}) is not available "
                f"in this release; known kinds: {known} (run the others with "
                "`invoke run --only NAME`)"
            )
        raise UnknownTypeError(f"{kind!r} (known kinds: {known})")
    try:
        loaded = point.load()  # type: ignore[attr-defined]
    except Exception as exc:  # a broken plugin must not take the whole tool down
        raise UnknownTypeError(
            f"{kind!r}: its plugin {point.value} could not be loaded: {exc}"  # type: ignore[attr-defined]
        ) from exc
    if not callable(loaded):
        raise UnknownTypeError(f"{kind!r}: plugin {point.value} is not callable")  # type: ignore[attr-defined]
    register(kind, loaded)
    return loaded  # type: ignore[no-any-return]


def new_manager(kind: str) -> Manager:
    """A fresh manager for ``kind``; raises `UnknownTypeError` for an unregistered kind."""
    return _factory(kind)()
