"""Every reloader's own checks over a loaded config, for ``invoke validate``/``lint``."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.reloader.contract import ReloaderError
from caproni_tasks.reloader.registry import new_manager

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig

__all__ = ["validate_reloaders"]


def validate_reloaders(config: CaproniConfig, only: Collection[str] = ()) -> list[Diagnostic]:
    """Diagnostics of each reloader's `Manager.validate` (of the reloaders named in
    ``only``, when given), sorted by place; a kind that is not installed is one
    diagnostic at the reloader, not an exception."""
    found: list[Diagnostic] = []
    for reloader in config.reloaders.values():
        if only and reloader.name not in only:
            continue
        location = reloader.location
        file, line, column = (
            (location.file, location.line, location.column)
            if location
            else (str(config.path), 0, 0)
        )
        try:
            manager = new_manager(reloader.type)
        except ReloaderError as exc:
            found.append(Diagnostic.error(file, line, column, "reloader-type", str(exc)))
            continue
        found.extend(manager.validate(reloader, config))
    return sorted(set(found), key=lambda d: (d.file, d.line, d.column, d.code, d.message))
