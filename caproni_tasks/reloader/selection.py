"""Which reloaders a session runs: ``--only``, and edit mode.

A kind registered with ``needs_edit_mode=True`` (Caproni's ``mirror``) runs only when
its reloader's ``edit_mode`` is true after every overlay, or when it is named with
``invoke run --only``. Other kinds (``process``) always run. What is left out is
returned with the line that turns it on in ``caproni.local.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.reloader.contract import RunFailedError

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig, ReloaderSpec

__all__ = [
    "EDIT_MODE_KINDS_DEFAULT",
    "Selection",
    "enable_line",
    "needs_edit_mode",
    "select",
    "skipped_message",
]

#: Kinds that need edit mode even when no registered kind says so (their module is
#: not installed or not loadable): a file selects the same reloaders either way.
EDIT_MODE_KINDS_DEFAULT = frozenset({"mirror"})


def needs_edit_mode(kind: str) -> bool:
    """Whether reloaders of ``kind`` run only in edit mode: the ``needs_edit_mode`` flag
    of the kind as registered in the kind registry, else `EDIT_MODE_KINDS_DEFAULT`."""
    import importlib

    try:
        registry = importlib.import_module("caproni_tasks.config.kinds")
        found = registry.find_kind(kind, quiet=True)
    except Exception:  # an unloadable kind selects like an unknown one
        found = None
    flag = getattr(found, "needs_edit_mode", None)
    return flag if isinstance(flag, bool) else kind in EDIT_MODE_KINDS_DEFAULT


@dataclass(frozen=True)
class Selection:
    """Reloaders to run (file order) and those edit mode leaves out."""

    run: tuple[ReloaderSpec, ...]
    skipped: tuple[ReloaderSpec, ...] = ()


def select(config: CaproniConfig, only: Sequence[str] = ()) -> Selection:
    """The reloaders ``invoke run`` starts; `RunFailedError` names unknown ``only`` ones.

    Named with ``only``, a reloader runs whatever its edit mode.
    """
    if only:
        unknown = [name for name in only if name not in config.reloaders]
        if unknown:
            known = ", ".join(config.reloaders) or "none"
            raise RunFailedError(f"no reloader named {', '.join(unknown)} (reloaders: {known})")
        return Selection(tuple(spec for name, spec in config.reloaders.items() if name in only))
    run: list[ReloaderSpec] = []
    skipped: list[ReloaderSpec] = []
    for spec in config.reloaders.values():
        if spec.edit_mode or not needs_edit_mode(spec.type):
            run.append(spec)
        else:
            skipped.append(spec)
    return Selection(tuple(run), tuple(skipped))


def local_overlay(config: CaproniConfig) -> Path:
    """The overlay that switches edit mode on: the one in use, else the one beside the file."""
    from caproni_tasks.config.loader import overlay_path

    return config.overlay if config.overlay is not None else overlay_path(config.path)


def enable_line(names: Sequence[str]) -> str:
    """The one line of YAML that turns edit mode on for ``names``."""
    inner = ", ".join(f"{name}: {{edit_mode: true}}" for name in names)
    return f"reloaders: {{{inner}}}"


def skipped_message(config: CaproniConfig, skipped: Sequence[ReloaderSpec]) -> str:
    """What was left out and how to run it (several lines)."""
    listed = ", ".join(f"{spec.name} ({spec.type})" for spec in skipped)
    overlay = local_overlay(config)
    merge = ""
    try:
        if overlay.is_file() and any(
            line.startswith("reloaders:") for line in overlay.read_text("utf-8").splitlines()
        ):
            merge = " (merge it into the reloaders: already there)"
    except (OSError, UnicodeDecodeError):
        pass
    first = skipped[0].name
    return (
        f"not running {listed}: edit mode is off. To run "
        f"{'it' if len(skipped) == 1 else 'them'}, add this line to {overlay}{merge}:\n"
        f"  {enable_line([spec.name for spec in skipped])}\n"
        f"or name one with `invoke run --only {first}`"
    )
