"""Every reloader's own checks over a loaded config, for ``invoke validate``/``lint``."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.reloader.contract import ReloaderError
from caproni_tasks.reloader.registry import new_manager

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig, Location

__all__ = ["place", "validate_reloaders"]


def place(config: CaproniConfig, *locations: Location | None) -> tuple[str, int, int]:
    """File, line and column of the first known location, else the config file itself."""
    for location in locations:
        if location is not None:
            return location.file, location.line, location.column
    return str(config.path), 0, 0


def validate_reloaders(config: CaproniConfig, only: Collection[str] = ()) -> list[Diagnostic]:
    """Diagnostics of each reloader's `Manager.validate` (of the reloaders named in
    ``only``, when given) and of the runtime variable URLs, sorted by place; a kind
    that is not installed is one diagnostic at the reloader, not an exception."""
    found: list[Diagnostic] = []
    for reloader in config.reloaders.values():
        if only and reloader.name not in only:
            continue
        file, line, column = place(config, reloader.location)
        try:
            manager = new_manager(reloader.type)
        except ReloaderError as exc:
            found.append(Diagnostic.error(file, line, column, "reloader-type", str(exc)))
            continue
        found.extend(manager.validate(reloader, config))
    found.extend(_check_runtimevars(config))
    return sorted(set(found), key=lambda d: (d.file, d.line, d.column, d.code, d.message))


def _check_runtimevars(config: CaproniConfig) -> list[Diagnostic]:
    """A runtime variable URL that cannot open would leave its processes waiting for a
    value forever: report what would stop it opening now, without opening anything."""
    from caproni_tasks.runtimevar import VariableError, check_variable_url

    found: list[Diagnostic] = []
    for spec in config.runtimevars.values():
        file, line, column = place(config, spec.location)
        try:
            check_variable_url(spec.url, base_dir=spec.base_dir)
        except VariableError as exc:
            found.append(
                Diagnostic.error(file, line, column, "runtimevar-url", f"{spec.name}: {exc}")
            )
    return found
