"""Offline checks of an ensure file's ``$ResolvedVersions`` file, as `Diagnostic`s.

What ``invoke ensure.verify`` checks without a repository: the versions file parses,
and it has an entry for every package and version of every ``$VerifiedPlatform`` (the
host if none). Missing entries point at the package line of the ensure file;
syntax errors at the line of the versions file.
"""

from __future__ import annotations

from pathlib import Path

from caproni_tasks.diagnostics import Diagnostic

__all__ = ["lint_versions_file"]


def lint_versions_file(path: Path, text: str) -> list[Diagnostic]:
    """Diagnostics for the versions file named by the ensure file ``path`` (with ``text``).

    Returns nothing when the ensure file has no ``$ResolvedVersions`` or the versions
    file does not exist yet (``invoke ensure.resolve`` creates it), or when the ensure
    file itself does not parse (its own checks report that).
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
        versions_text = versions_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        return [Diagnostic.error(shown, 0, 0, "unreadable", f"cannot read the file: {exc}")]
    try:
        versions = parse_versions_file(versions_text)
    except EnsureFileError as exc:
        line = int(getattr(exc, "line", 0) or 0)
        return [Diagnostic.error(shown, line, 1 if line else 0, "versions-file-syntax", str(exc))]

    lines = text.split("\n")
    found: dict[tuple[int, str, str], list[str]] = {}
    for os_name, arch in source.platforms():
        try:
            parsed.resolve(versions.resolve, template_args=platform_template_args(os_name, arch))
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
    return out


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
