"""``invoke ensure.fmt``: rewrite ensure files in the canonical form of the cipd client
(comments kept unless ``--strip-comments``)."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from caproni_tasks.tasks._common import (
    checked_path,
    fail,
    listed,
    print_diagnostics,
    setting_path,
)

#: Said when the configured default file is missing, so the user knows why it was read.
DEFAULT_FILE_HINT = (
    " (the configured ensure file: name files with --file, or set caproni.ensure_file)"
)


@task(
    auto_shortflags=False,
    iterable=["file"],
    help={
        "file": "Ensure file to format (repeatable; files may also follow a '--'). "
        "Default: the configured ensure file (caproni.ensure_file, 'tools.ensure').",
        "check": "Change nothing: print a unified diff per file that is not canonical "
        "and exit 1 if any is not.",
        "strip_comments": "Drop comments and blank-line groups: write exactly what "
        "'cipd ensure-file-format' writes.",
    },
)
def fmt(
    c: Context, file: list[str] | None = None, check: bool = False, strip_comments: bool = False
) -> None:
    """Rewrite ensure files in canonical form, keeping comments and blank-line groups.

    The canonical form orders settings, platforms, subdirs and packages and aligns
    versions, as the cipd client does; comments stay with the line they precede
    (--strip-comments drops them, as cipd does). Files are replaced atomically and keep
    their permissions. Usage:
    ``invoke ensure.fmt [--check] [--strip-comments] [--file F ...] [-- F ...]``.
    """
    import shlex

    from caproni_tasks.diagnostics import Diagnostic
    from caproni_tasks.ensure import EnsureParseError, format_keeping_comments, parse
    from caproni_tasks.lint import read_source

    names = listed(file) + shlex.split(getattr(c, "remainder", "") or "")
    paths = [checked_path(name, "--file") for name in names] or [setting_path(c, "ensure_file")]
    diagnostics: list[Diagnostic] = []
    sources: dict[str, str] = {}
    not_canonical: list[str] = []
    for path in paths:
        shown = _shown(path)
        text = read_source(path, shown, missing_hint="" if names else DEFAULT_FILE_HINT)
        if isinstance(text, Diagnostic):
            diagnostics.append(text)
            continue
        sources[shown] = text
        try:
            if strip_comments:
                canonical = parse(text, filename=shown).serialize()
            else:
                canonical = format_keeping_comments(text, filename=shown)
        except EnsureParseError as err:
            diagnostics.append(Diagnostic.error(shown, err.line, err.column, err.code, err.message))
            continue
        if canonical == text:
            continue
        not_canonical.append(shown)
        if check:
            sys.stdout.write(_unified_diff(shown, text, canonical))
            continue
        problem = _unwritable(path)
        if problem is None:
            try:
                _replace_atomically(path, canonical)
            except OSError as exc:
                problem = f"cannot write the file: {_reason(exc)}"
        if problem is not None:
            diagnostics.append(Diagnostic.error(shown, 0, 0, "unwritable", problem))
            continue
        print(f"reformatted {shown}")
    sys.stdout.flush()
    if diagnostics:
        print_diagnostics(diagnostics, "text", sources)
    if check and not_canonical:
        again = "invoke ensure.fmt --strip-comments" if strip_comments else "invoke ensure.fmt"
        fail(
            f"{len(not_canonical)} ensure file(s) not in canonical form; "
            f"run '{again}' to rewrite them"
        )
    if diagnostics:
        fail(f"{len(diagnostics)} ensure file(s) could not be formatted")


def _reason(exc: OSError) -> str:
    """The operating system's reason without Python's ``[Errno N]`` decoration."""
    return exc.strerror or str(exc)


def _unwritable(path: Path) -> str | None:
    """Why ``path`` must not be rewritten, or None.

    The rewrite renames a new file over the old one, which only needs a writable
    directory; a file without write permission is left alone as its owner asked.
    """
    import os

    target = path.resolve()
    if not target.stat().st_mode & 0o222 or not os.access(target, os.W_OK):
        return "the file is read-only; not rewritten (make it writable, or use --check)"
    return None


def _shown(path: Path) -> str:
    """The path as the user would type it: relative to the working directory if inside."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _split_lines(text: str) -> list[str]:
    """Lines with their "\\n" (only "\\n" ends a line in an ensure file)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _unified_diff(name: str, before: str, after: str) -> str:
    import difflib

    out: list[str] = []
    for line in difflib.unified_diff(
        _split_lines(before), _split_lines(after), f"{name} (current)", f"{name} (canonical)"
    ):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _replace_atomically(path: Path, text: str) -> None:
    """Rewrite the file in one rename, keeping its mode and (where allowed) its owner."""
    from caproni_tasks.atomicfile import write_atomic

    target = path.resolve()
    status = target.stat()
    write_atomic(target, text, mode=status.st_mode & 0o7777, owner_of=status)
