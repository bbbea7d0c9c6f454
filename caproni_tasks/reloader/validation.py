"""Every reloader's own checks over a loaded config, for ``invoke validate``/``lint``."""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.reloader.contract import ReloaderError
from caproni_tasks.reloader.registry import new_manager

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig, Location, ProcessSpec, ReloaderSpec

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
        found.extend(_check_common(config, reloader))
    found.extend(_check_runtimevars(config))
    return sorted(set(found), key=lambda d: (d.file, d.line, d.column, d.code, d.message))


#: A list item that holds what looks like a second item (``- a - b`` on one line).
_FOLDED = re.compile(r"(^|\s)- \S")


def _check_common(config: CaproniConfig, reloader: ReloaderSpec) -> list[Diagnostic]:
    """Checks every kind gets for its common parts: env files (present, well formed),
    and of processes in the common shape: list items YAML folded into one string, and
    watch globs that match nothing in a cloned repository."""
    from caproni_tasks.config.dotenv import DotenvError, load_env_files
    from caproni_tasks.config.model import ProcessSpec

    found: list[Diagnostic] = []
    cloned = reloader.directory.is_dir()
    # Globs are checked against files only in a repository's checkout (what the
    # repository holds); a directory of the config's own may be filled later.
    in_checkout = cloned and reloader.repository is not None
    processes = getattr(reloader.settings, "processes", ())
    specs = (
        [p for p in processes if isinstance(p, ProcessSpec)] if isinstance(processes, tuple) else []
    )
    files: dict[Path, tuple[str, int, int]] = {}
    for path in reloader.env_files:
        files.setdefault(path, place(config, reloader.location))
    for spec in specs:
        at = place(config, spec.location, reloader.location)
        for path in spec.env_files:
            files.setdefault(path, at)
        for field, items in (("watch", spec.watch), ("ignore", spec.ignore)):
            for item in items:
                if _FOLDED.search(item):
                    found.append(
                        Diagnostic.warning(
                            *at,
                            "yaml-folded-list",
                            f"{spec.name}: {field} item {item!r} looks like several list "
                            "items folded into one string by YAML; put each on its own line "
                            "starting with '- ' (or write [a, b])",
                        )
                    )
        if in_checkout and spec.directory.is_dir():
            for pattern in spec.watch:
                if not _FOLDED.search(pattern) and not _matches_something(spec, pattern):
                    found.append(
                        Diagnostic.warning(
                            *at,
                            "process-watch-nothing",
                            f"{spec.name}: watch glob {pattern!r} matches no file in "
                            f"{spec.directory} (a typo? globs are relative to the process "
                            "directory)",
                        )
                    )
    # Inside a repository that is not cloned yet nothing can be checked.
    for path, at in files.items() if cloned else ():
        try:
            load_env_files([path])
        except DotenvError as exc:
            found.append(Diagnostic.error(exc.file, exc.line, exc.column, "env-file", exc.message))
        except OSError as exc:
            found.append(
                Diagnostic.error(*at, "env-file", f"env_file {path}: {exc.strerror or exc}")
            )
    return found


#: Directories looked through at most, when looking for a file a watch glob matches.
_SCAN_LIMIT = 20000


def _matches_something(spec: ProcessSpec, pattern: str) -> bool:
    """Whether a file or directory below the process directory matches ``pattern``
    (ignored directories are not entered; a very large tree counts as a match)."""
    from caproni_tasks.reloader.globs import DEFAULT_IGNORES, PathMatcher

    matcher = PathMatcher(spec.directory, [pattern], spec.ignore)
    skip = PathMatcher(spec.directory, list(DEFAULT_IGNORES), ())
    for seen, (root, dirs, names) in enumerate(os.walk(spec.directory)):
        if seen >= _SCAN_LIMIT:
            return True
        for name in (*names, *dirs):
            if matcher.matches(os.path.join(root, name)):
                return True
        dirs[:] = [d for d in dirs if not skip.matches(os.path.join(root, d))]
    return False


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
