"""The kind registry: a reloader kind is one unit, registered in one place.

A `Kind` bundles everything that makes a kind: its name, the schema of its section
(the ``<name>:`` key of a reloader, written once in `caproni_tasks.config.spec` nodes,
which yield both the strictyaml validator and the JSON Schema), the builder that turns
the validated section into typed settings, and the factory of its `Manager`::

    from caproni_tasks.reloader import Kind, register_kind

    register_kind(Kind("skaffold", manager=SkaffoldManager, section=SECTION, build=build))

Built-in kinds live in ``caproni_tasks.reloader.kinds`` and are imported the first time
their name is asked for; third-party kinds come from the ``caproni_tasks.reloaders``
entry-point group, whose entries name a `Kind` (full power: section checked, settings
typed) or just a manager factory (section kept as plain data). Both are loaded lazily,
so ``invoke --list`` imports none of them.

This module sits under both the config loader and the reloaders (it imports neither),
so the dependency direction ``reloader → config`` holds.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caproni_tasks.config.build import SectionContext
    from caproni_tasks.config.spec import Node

__all__ = [
    "BUILTIN_KINDS",
    "ENTRY_POINT_GROUP",
    "Kind",
    "KindLoadError",
    "SettingsBuilder",
    "find_kind",
    "kind_names",
    "known_kinds",
    "refresh_plugins",
    "register_kind",
]

ENTRY_POINT_GROUP = "caproni_tasks.reloaders"

#: Built-in kinds: name → the module that registers it when imported.
BUILTIN_KINDS: Mapping[str, str] = {
    "process": "caproni_tasks.reloader.kinds.process",
    "mirror": "caproni_tasks.reloader.kinds.mirror",
    "skaffold": "caproni_tasks.reloader.kinds.skaffold",
}

#: ``build(section, context)``: the validated section (plain data: dicts, lists and the
#: values its spec nodes parsed) → the kind's typed settings. Problems go through
#: ``context.error``; the section is already known to match the schema.
SettingsBuilder = Callable[[Mapping[str, Any], "SectionContext"], object]


class KindLoadError(Exception):
    """A kind's module or plugin could not be loaded (the message says why)."""


@dataclass(frozen=True)
class Kind:
    """One reloader kind. Only ``name`` and ``manager`` are required.

    - ``manager``: a factory (usually the class) returning a fresh `Manager`; None
      while a kind's settings load but nothing can run it yet.
    - ``section``: the schema of the ``<name>:`` section, a `spec.Node` (usually a
      `spec.Struct`); None accepts any mapping, passed on as plain data.
    - ``build``: typed settings from the validated section; None keeps the plain data.
    - ``process_names``: the names of the processes its settings describe (lines up
      the output's name column before the processes start); None: none known ahead.
    - ``needs_edit_mode``: its reloaders run only when their ``edit_mode`` is true
      (after overlays) or when named with ``invoke run --only`` (as Caproni's mirror).
    - ``description``: one line, used in messages and ``invoke schema``.
    """

    name: str
    manager: Callable[[], Any] | None
    section: Node | None = None
    build: SettingsBuilder | None = None
    process_names: Callable[[Any], Iterable[str]] | None = None
    needs_edit_mode: bool = False
    description: str = ""
    #: True for the kinds of this package (their settings may be cached).
    builtin: bool = False


_kinds: dict[str, Kind] = {}
_plugin_points: dict[str, Any] | None = None  # kind -> importlib.metadata.EntryPoint
_lock = threading.RLock()


def register_kind(kind: Kind) -> Kind:
    """Make ``kind`` known (replacing an earlier kind of that name, so a project can
    override a built-in one deliberately); returns it, for use as ``KIND = register_kind(…)``."""
    if not kind.name or not kind.name.strip():
        raise ValueError("a reloader kind needs a non-empty name")
    if kind.manager is not None and not callable(kind.manager):
        raise TypeError(f"kind {kind.name!r}: manager must be a factory (a class or function)")
    with _lock:
        _kinds[kind.name] = kind
    return kind


def register_manager(name: str, factory: Callable[[], Any]) -> None:
    """Replace only the manager of ``name`` (keeping its section and builder), or add a
    kind whose section is plain data."""
    existing = find_kind(name, quiet=True)
    register_kind(
        replace(existing, manager=factory) if existing is not None else Kind(name, factory)
    )


def _entry_points() -> dict[str, Any]:
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


def kind_names() -> list[str]:
    """Every kind name known, sorted, without importing any kind."""
    with _lock:
        names = set(_kinds)
    names.update(BUILTIN_KINDS)
    names.update(_entry_points())
    return sorted(names)


def find_kind(name: str, *, quiet: bool = False) -> Kind | None:
    """The kind called ``name``, importing its module or plugin on first use; None when
    there is no such kind. A kind that fails to load raises `KindLoadError` (or gives
    None with ``quiet``)."""
    with _lock:
        found = _kinds.get(name)
        if found is not None:
            return found
        try:
            return _load(name)
        except KindLoadError:
            if quiet:
                return None
            raise


def _load(name: str) -> Kind | None:
    module = BUILTIN_KINDS.get(name)
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            message = f"{name!r}: its module {module} could not be imported: {exc}"
            raise KindLoadError(message) from exc
        return _kinds.get(name)
    point = _entry_points().get(name)
    if point is None:
        return None
    try:
        loaded = point.load()
    except Exception as exc:  # a broken plugin must not take the whole tool down
        message = f"{name!r}: its plugin {point.value} could not be loaded: {exc}"
        raise KindLoadError(message) from exc
    if name in _kinds:  # the plugin's module registered it while importing
        return _kinds[name]
    if isinstance(loaded, Kind):
        kind = loaded if loaded.name == name else replace(loaded, name=name)
    elif callable(loaded):
        kind = Kind(name, manager=loaded)
    else:
        raise KindLoadError(f"{name!r}: plugin {point.value} is neither a Kind nor callable")
    return register_kind(replace(kind, builtin=False))


def known_kinds() -> list[Kind]:
    """Every kind that loads (built-in and plugins), sorted by name; broken plugins are
    left out (`find_kind` reports them where they are used)."""
    found = (find_kind(name, quiet=True) for name in kind_names())
    return [kind for kind in found if kind is not None]
