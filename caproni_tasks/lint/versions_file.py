"""Offline checks of an ensure file's ``$ResolvedVersions`` file, as `Diagnostic`s.

What ``invoke ensure.verify`` checks without a repository: the versions file parses,
it has an entry for every package and version of every ``$VerifiedPlatform`` (the
host if none), and no entry the ensure file no longer uses. Missing entries point at
the package line of the ensure file; syntax errors and unused entries at the line of
the versions file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.userfiles import read_regular_text

if TYPE_CHECKING:
    from caproni_tasks.ensure import Pin

__all__ = ["lint_versions_file", "lint_versions_file_alone"]


def lint_versions_file(path: Path, text: str) -> list[Diagnostic]:
    """Diagnostics for the versions file named by the ensure file ``path`` (with ``text``).

    Returns nothing when the ensure file has no ``$ResolvedVersions`` or does not parse
    (its own checks report that). A versions file that does not exist is an error at
    the ``$ResolvedVersions`` line (``invoke ensure.resolve`` creates it).
    """
    from caproni_tasks.ensure import (
        EnsureFileError,
        MultiError,
        parse,
        parse_versions_file,
        platform_template_args,
    )
    from caproni_tasks.packages.pinning import EnsureSource

    try:
        parsed = parse(text, filename=str(path))
    except EnsureFileError:
        return []
    source = EnsureSource(path, text, parsed)
    versions_path = source.versions_path
    if versions_path is None:
        return []
    shown = _shown(versions_path, path)
    try:
        versions_text = read_regular_text(versions_path)
    except FileNotFoundError:
        line, column = _setting_position(text, "$resolvedversions")
        return [
            Diagnostic.error(
                str(path),
                line,
                column,
                "versions-file-missing",
                f"the $ResolvedVersions file {shown} does not exist; "
                "run 'invoke ensure.resolve' to create it",
            )
        ]
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return [Diagnostic.error(shown, 0, 0, "unreadable", f"cannot read the file: {reason}")]
    except UnicodeDecodeError as exc:
        return [Diagnostic.error(shown, 0, 0, "unreadable", f"cannot read the file: {exc}")]
    try:
        versions = parse_versions_file(versions_text)
    except EnsureFileError as exc:
        line = int(getattr(exc, "line", 0) or 0)
        return [Diagnostic.error(shown, line, 1 if line else 0, "versions-file-syntax", str(exc))]

    lines = text.split("\n")
    found: dict[tuple[int, str, str], list[str]] = {}
    used: set[tuple[str, str]] = set()

    def recording(package: str, version: str) -> Pin:
        used.add((package, version))
        return versions.resolve(package, version)

    for os_name, arch in source.platforms():
        try:
            parsed.resolve(recording, template_args=platform_template_args(os_name, arch))
        except EnsureFileError as exc:
            errors = exc.errors if isinstance(exc, MultiError) else [exc]
            for error in errors:
                line = int(getattr(error, "line", 0) or 0)
                key = (line, str(error), str(getattr(error, "subject", "") or ""))
                found.setdefault(key, []).append(f"{os_name}-{arch}")
    out = []
    for (line, message, subject), platforms in sorted(found.items()):
        column = _column(lines, line, subject)
        hint = "; run 'invoke ensure.resolve' to update it" if "versions file" in message else ""
        out.append(
            Diagnostic.error(
                str(path),
                line,
                column,
                "versions-file-stale",
                f"{message} (when resolving {', '.join(platforms)}){hint}",
            )
        )
    # Errors other than a missing entry stop resolving before versions are looked up,
    # so which entries are used is only known when every error is a missing entry.
    if all("not in the versions file" in message for _, message, _ in found):
        out.extend(_unused_entries(shown, versions_text, set(versions.entries) - used))
    return out


def lint_versions_file_alone(path: Path, text: str) -> list[Diagnostic]:
    """Diagnostics for a versions file named on its own (``invoke lint --file x.versions``).

    The file must parse as a versions file. Each ensure file beside it (``*.ensure`` in
    the same directory) whose ``$ResolvedVersions`` names it is checked against it as
    `lint_versions_file` does: missing entries at the ensure file's package lines,
    unused entries at this file's lines.
    """
    from caproni_tasks.ensure import EnsureFileError, parse, parse_versions_file
    from caproni_tasks.packages.pinning import EnsureSource

    shown = str(path)
    try:
        parse_versions_file(text)
    except EnsureFileError as exc:
        line = int(getattr(exc, "line", 0) or 0)
        return [Diagnostic.error(shown, line, 1 if line else 0, "versions-file-syntax", str(exc))]
    out: list[Diagnostic] = []
    try:
        siblings = sorted(path.parent.glob("*.ensure"))
    except OSError:
        siblings = []
    target = path.absolute()
    for ensure_path in siblings:
        try:
            ensure_text = read_regular_text(ensure_path)
            parsed = parse(ensure_text, filename=str(ensure_path))
        except (OSError, UnicodeDecodeError, EnsureFileError):
            continue
        named = EnsureSource(ensure_path, ensure_text, parsed).versions_path
        if named is None or named.absolute() != target:
            continue
        shown_ensure = ensure_path if path.is_absolute() else _relative(ensure_path)
        out.extend(lint_versions_file(shown_ensure, ensure_text))
    return out


def _relative(path: Path) -> Path:
    try:
        return path.absolute().relative_to(Path.cwd())
    except ValueError:
        return path


def _setting_position(text: str, key: str) -> tuple[int, int]:
    """(line, column of the value) of the last ``key`` setting, which is the one in force."""
    from caproni_tasks.ensure import split_statement

    found = (0, 0)
    for number, raw in enumerate(text.split("\n"), start=1):
        head_col, head, rest_col, _ = split_statement(raw)
        if head.lower() == key:
            found = (number, rest_col or head_col)
    return found


def _unused_entries(shown: str, text: str, unused: set[tuple[str, str]]) -> list[Diagnostic]:
    """An error at the package line of each entry no platform of the ensure file uses."""
    out = []
    for line, package, version in _entry_lines(text):
        if (package, version) in unused:
            out.append(
                Diagnostic.error(
                    shown,
                    line,
                    1,
                    "versions-file-stale",
                    f"{package} {version} is not used by the ensure file any more; "
                    "run 'invoke ensure.resolve' to update it",
                )
            )
    return out


def _entry_lines(text: str) -> list[tuple[int, str, str]]:
    """(line of the package name, package, version) of each triple of a versions file
    that already parsed: non-comment lines, taken three at a time."""
    values = [
        (number, stripped)
        for number, raw in enumerate(text.split("\n"), start=1)
        if (stripped := raw.strip()) and not stripped.startswith("#")
    ]
    return [(values[i][0], values[i][1], values[i + 1][1]) for i in range(0, len(values) - 2, 3)]


def _shown(target: Path, ensure_path: Path) -> str:
    """The versions file as the user would name it: relative when the ensure file is."""
    if ensure_path.is_absolute():
        return str(target)
    try:
        return str(target.relative_to(Path.cwd()))
    except ValueError:
        return str(target)


def _column(lines: list[str], line: int, subject: str) -> int:
    """1-based column of ``subject`` (the version) on the line, else of its first word."""
    if not 0 < line <= len(lines):
        return 0
    text = lines[line - 1]
    at = text.find(subject) if subject else -1
    if at >= 0:
        return at + 1
    stripped = text.lstrip()
    return len(text) - len(stripped) + 1 if stripped else 0
