"""Managers by kind name, on top of the kind registry (`caproni_tasks.config.kinds`).

A kind is registered once, as a `Kind` (name, section schema, settings builder,
manager); see docs/reloaders.md, "Writing a kind". Built-in kinds are imported the
first time they are asked for; a third-party package adds a kind by declaring, in its
``pyproject.toml``::

    [project.entry-points."caproni_tasks.reloaders"]
    mykind = "mypackage.reloader:KIND"      # a Kind (or just a manager factory)

Plugins are loaded only when their kind is first asked for, so unused ones cost nothing.
`register(kind, factory)` is the short form that sets only the manager.
"""

from __future__ import annotations

from collections.abc import Callable

from caproni_tasks.config.kinds import (
    ENTRY_POINT_GROUP,
    Kind,
    KindLoadError,
    find_kind,
    kind_names,
    refresh_plugins,
    register_kind,
    register_manager,
)
from caproni_tasks.reloader.contract import Manager, UnknownTypeError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Kind",
    "ManagerFactory",
    "get_kind",
    "list_types",
    "new_manager",
    "refresh_plugins",
    "register",
    "register_kind",
]

ManagerFactory = Callable[[], Manager]


def register(kind: str, factory: ManagerFactory) -> None:
    """Make ``kind`` run with managers from ``factory``; its section schema and settings
    builder stay as registered (a kind registered this way alone takes any mapping).
    A later registration replaces an earlier one, so a project can override a built-in
    kind deliberately."""
    register_manager(kind, factory)


def list_types() -> list[str]:
    """Every kind that `new_manager` may accept, sorted (nothing is imported)."""
    return kind_names()


def get_kind(kind: str) -> Kind:
    """The registered `Kind`; raises `UnknownTypeError` when there is none (or it is
    broken, or it has no manager in this release)."""
    try:
        found = find_kind(kind)
    except KindLoadError as exc:
        raise UnknownTypeError(str(exc)) from exc
    if found is None:
        known = ", ".join(list_types()) or "none"
        raise UnknownTypeError(f"{kind!r} (known kinds: {known})")
    if found.manager is None:
        runnable = ", ".join(
            name
            for name in list_types()
            if (other := find_kind(name, quiet=True)) is not None and other.manager is not None
        )
        what = f" ({found.description})" if found.description else ""
        raise UnknownTypeError(
            f"{kind!r}: the {kind} kind{what} is not available in this release; known "
            f"kinds: {runnable or 'none'} (run the others with `invoke run --only NAME`)"
        )
    return found


def new_manager(kind: str) -> Manager:
    """A fresh manager for ``kind``; raises `UnknownTypeError` for an unregistered kind."""
    factory = get_kind(kind).manager
    assert factory is not None
    manager: Manager = factory()
    return manager
