"""Lint an ensure file: every parse, template, name, version, subdir and duplicate problem.

No repository is needed: templates are resolved for the host and every
``$VerifiedPlatform`` with the checks of a real resolve but without lookups. A
problem several platforms share is reported once, naming the platforms when not
all of them hit it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.diagnostics import Diagnostic

if TYPE_CHECKING:
    from caproni_tasks.ensure import EnsureFile, ResolveError

__all__ = ["MAX_PARSE_ERRORS", "lint_ensure_file"]

#: Added to a problem of line 1 when the file starts with a byte order mark, which
#: (as in the cipd client) is part of the first word, not whitespace.
BOM_HINT = "; the file starts with a UTF-8 byte order mark (BOM): save it without one"

#: Parse errors reported per file before giving up (each one needs a re-parse).
MAX_PARSE_ERRORS = 50


def _columns(lines: list[str], line: int) -> tuple[int, int]:
    """(HEAD column, REST column) of a 1-based line; 1 when unknown."""
    if not 0 < line <= len(lines):
        return 1, 1
    head_col, _, rest_col, _ = _split(lines[line - 1])
    return head_col or 1, rest_col or head_col or 1


def _split(line: str) -> tuple[int, str, int, str]:
    from caproni_tasks.ensure import split_statement

    return split_statement(line.removesuffix("\r"))


def _parse_all(
    path: Path, text: str, diagnostics: list[Diagnostic], stand_ins: dict[str, str]
) -> EnsureFile | None:
    """Parse, and after each parse error neutralise that line and parse again.

    A bad ``@Subdir`` line becomes a unique valid stand-in subdir, so the lines under
    it are still checked without landing in another subdir (``stand_ins`` maps each
    stand-in back to the subdir as written); any other bad line is blanked.
    """
    from caproni_tasks.ensure import EnsureParseError, parse

    lines = text.split("\n")
    for _ in range(MAX_PARSE_ERRORS):
        try:
            return parse("\n".join(lines), filename=str(path))
        except EnsureParseError as err:
            message = err.message
            if text.startswith("\ufeff") and (err.line == 1 or err.code == "setting-order"):
                message += BOM_HINT
            diagnostics.append(Diagnostic.error(path, err.line, err.column, err.code, message))
            index = err.line - 1
            if not 0 <= index < len(lines):
                return None
            _, head, _, rest = _split(lines[index])
            if err.code == "bad-subdir" or head.lower() == "@subdir":
                stand_in = f"caproni-lint-invalid-subdir-{err.line}"
                stand_ins[stand_in] = rest
                lines[index] = f"@Subdir {stand_in}"
            else:
                lines[index] = ""
    return None


def _unmask(message: str, stand_ins: dict[str, str]) -> str:
    """``message`` with each stand-in subdir shown as the subdir the user wrote."""
    from caproni_tasks.ensure import go_quote

    for stand_in, written in stand_ins.items():
        message = message.replace(go_quote(stand_in), go_quote(written))
    return message


def lint_ensure_file(path: Path, text: str) -> list[Diagnostic]:
    """Every problem of the ensure file at ``path`` (whose content is ``text``)."""
    from caproni_tasks.ensure import collect_problems, host_template_args, platform_template_args

    diagnostics: list[Diagnostic] = []
    stand_ins: dict[str, str] = {}
    parsed = _parse_all(path, text, diagnostics, stand_ins)
    if parsed is None:
        return diagnostics

    host = host_template_args()
    platforms = list(dict.fromkeys([(host["os"], host["arch"]), *parsed.verified_platforms]))
    source_lines = text.split("\n")
    # (line, code, message) -> (column, platforms that hit it), in first-seen order.
    found: dict[tuple[int, str, str], tuple[int, list[str]]] = {}
    for os_name, arch in platforms:
        for problem in collect_problems(parsed, platform_template_args(os_name, arch)):
            key = (problem.line, problem.code, _unmask(problem.message, stand_ins))
            if key not in found:
                found[key] = (_problem_column(problem, source_lines), [])
            found[key][1].append(f"{os_name}-{arch}")
    for (line, code, message), (column, hit) in found.items():
        if len(hit) < len(platforms):
            message = f"{message} (when resolving for {', '.join(hit)})"
        if line == 1 and text.startswith("\ufeff"):
            message += BOM_HINT
        diagnostics.append(Diagnostic.error(path, line, column, code, message))
    diagnostics.sort(key=lambda d: (d.line, d.column))
    return diagnostics


def _problem_column(problem: ResolveError, source_lines: list[str]) -> int:
    """The column of the offending text: the template, the version or the subdir."""
    if problem.line <= 0:
        return 0
    head_col, rest_col = _columns(source_lines, problem.line)
    if problem.code in ("bad-version", "resolve-failed", "bad-subdir"):
        return rest_col + (problem.offset if problem.code == "bad-subdir" else 0)
    return head_col + problem.offset
