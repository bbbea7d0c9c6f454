"""Resolve errors worded for people: one line per problem, not one per platform, and
close names for a package that does not exist.

Resolving for every ``$VerifiedPlatform`` meets the same missing package once per
platform; the cipd client prints it that many times. Here errors that differ only in
their platform are one line naming every platform (``when resolving linux-amd64,
mac-arm64: …``), and each package the repository does not have gets the names it
holds that are close to it (when the repository can list its packages).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caproni_tasks.ensure import EnsureFileError
    from caproni_tasks.packages.repository import Repository

__all__ = ["close_names", "grouped_message", "missing_package_hints"]

#: How many close names to suggest, and how close they must be (difflib's ratio).
MAX_SUGGESTIONS = 3
CUTOFF = 0.6


def grouped_message(error: EnsureFileError) -> str:
    """``str(error)``, with errors that differ only by platform merged into one."""
    from caproni_tasks.ensure import MultiError, PlatformError
    from caproni_tasks.ensure.errors import MAX_LISTED_ERRORS

    errors = error.errors if isinstance(error, MultiError) else [error]
    groups: dict[str, list[str]] = {}
    for each in errors:
        if isinstance(each, PlatformError):
            platform = f"{each.platform[0]}-{each.platform[1]}"
            groups.setdefault(str(each.error), []).append(platform)
        else:
            groups.setdefault(str(each), [])
    lines = [
        f"when resolving {', '.join(platforms)}: {text}" if platforms else text
        for text, platforms in groups.items()
    ]
    if len(lines) == 1:
        return lines[0]
    shown = [f"err[{i}]: {line}" for i, line in enumerate(lines[:MAX_LISTED_ERRORS])]
    if len(lines) > MAX_LISTED_ERRORS:
        shown.append(f"err[{MAX_LISTED_ERRORS}:{len(lines)}] <omitted>")
    return "\n".join(shown)


def close_names(name: str, known: Collection[str]) -> list[str]:
    """Up to `MAX_SUGGESTIONS` of ``known`` that look like ``name``, closest first."""
    return difflib.get_close_matches(name, list(known), n=MAX_SUGGESTIONS, cutoff=CUTOFF)


def missing_package_hints(missing: Collection[str], repository: Repository) -> list[str]:
    """One line per missing package: the close names the repository holds, if any."""
    from caproni_tasks.packages.repository import RepositoryError

    # Repositories that can list their packages have ``packages()`` (directories, the
    # CIPD service); the others (a static HTTP site) get no suggestions.
    listing = getattr(repository, "packages", None)
    if not missing or not callable(listing):
        return []
    try:
        known = [str(name) for name in listing()]
    except (RepositoryError, OSError):
        return []
    hints = []
    for name in sorted(missing):
        found = close_names(name, known)
        if found:
            choices = " or ".join(f'"{one}"' for one in found)
            hints.append(f'no package "{name}": did you mean {choices}?')
    return hints
