"""What the built-in kinds that run processes share: their section (or an error when it
is missing), the check that the reloader's directory exists, the validate diagnostics
about the section itself, and the failed processes of the running session."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.reloader.contract import RunFailedError, StatusFailedError
from caproni_tasks.reloader.validation import place

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig, ProcessSpec, ReloaderSpec
    from caproni_tasks.reloader.session import ProcessRecord

__all__ = [
    "failed_in_session",
    "not_cloned",
    "require_directory",
    "section_diagnostics",
    "settings_for_run",
    "settings_for_status",
    "settings_of",
]

_S = TypeVar("_S")


def settings_of(reloader: ReloaderSpec, cls: type[_S]) -> _S | None:
    """The reloader's settings when they are of ``cls``, else None."""
    return reloader.settings if isinstance(reloader.settings, cls) else None


def settings_for_run(reloader: ReloaderSpec, cls: type[_S], kind: str) -> _S:
    """The settings `Manager.run` starts from: `RunFailedError` when the reloader has no
    ``kind:`` section or its directory does not exist."""
    settings = settings_of(reloader, cls)
    if settings is None:
        raise RunFailedError(f"reloader {reloader.name} has no `{kind}:` section")
    require_directory(reloader)
    return settings


def settings_for_status(reloader: ReloaderSpec, cls: type[_S], kind: str) -> _S:
    """The settings `Manager.status` starts from (`StatusFailedError` without them)."""
    settings = settings_of(reloader, cls)
    if settings is None:
        raise StatusFailedError(f"reloader {reloader.name} has no `{kind}:` section")
    return settings


def require_directory(reloader: ReloaderSpec) -> None:
    """`RunFailedError` when the reloader's directory does not exist (its repository
    not cloned yet)."""
    if not reloader.directory.is_dir():
        raise RunFailedError(
            f"reloader {reloader.name}: directory {reloader.directory} does not exist"
            + (f" (clone repository {reloader.repository} first)" if reloader.repository else "")
        )


def not_cloned(reloader: ReloaderSpec) -> str:
    """Why a reloader whose directory does not exist is not ready."""
    what = f"repository {reloader.repository}" if reloader.repository else "directory"
    return f"{what} not cloned: {reloader.directory} does not exist"


def section_diagnostics(
    reloader: ReloaderSpec,
    config: CaproniConfig,
    processes: tuple[ProcessSpec, ...] | None,
    *,
    kind: str,
    needs: str,
    none: str,
) -> list[Diagnostic]:
    """What validate says about a kind's section: an error ``<kind>-settings`` when it
    is missing (``processes`` None; it ``needs`` what it names), a warning
    ``<kind>-none`` when it lists no processes (``none`` names the key)."""
    file, line, column = place(config, reloader.location)
    if processes is None:
        return [
            Diagnostic.error(
                file,
                line,
                column,
                f"{kind}-settings",
                f"reloader {reloader.name!r} of type {kind} needs a `{kind}:` section with {needs}",
            )
        ]
    if not processes:
        return [
            Diagnostic.warning(
                file, line, column, f"{kind}-none", f"reloader {reloader.name!r} has no {none}"
            )
        ]
    return []


def failed_in_session(reloader: ReloaderSpec, config: CaproniConfig) -> list[ProcessRecord]:
    """The processes of this reloader that the running session records as failed."""
    from caproni_tasks.reloader.session import read_session

    session = read_session(config.path)
    if session is None or not session.alive:
        return []
    return [p for p in session.processes if p.reloader == reloader.name and p.state == "failed"]
