"""One problem report shape for every validation path (lint, validate, load errors).

Editors and CI consume the same `Diagnostic` through three formatters: ``text`` for
humans (with the source line and a caret), ``github`` for workflow annotations and
``json`` for tools.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "FORMATTERS",
    "Diagnostic",
    "Severity",
    "format_diagnostics",
    "format_github",
    "format_json",
    "format_text",
    "has_errors",
]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """A problem at a place: ``line`` and ``column`` are 1-based; 0 means "unknown"."""

    file: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str

    @classmethod
    def error(cls, file: str | Path, line: int, column: int, code: str, message: str) -> Diagnostic:
        return cls(str(file), line, column, Severity.ERROR, code, message)

    @classmethod
    def warning(
        cls, file: str | Path, line: int, column: int, code: str, message: str
    ) -> Diagnostic:
        return cls(str(file), line, column, Severity.WARNING, code, message)

    @property
    def location(self) -> str:
        """``file:line:col`` with unknown parts left out, as compilers print it."""
        parts = [self.file]
        if self.line > 0:
            parts.append(str(self.line))
            if self.column > 0:
                parts.append(str(self.column))
        return ":".join(parts)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def _source_line(
    diagnostic: Diagnostic, sources: Mapping[str, str], cache: dict[str, list[str] | None]
) -> str | None:
    if diagnostic.line <= 0:
        return None
    if diagnostic.file not in cache:
        text = sources.get(diagnostic.file)
        if text is None:
            try:
                text = Path(diagnostic.file).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = None
        cache[diagnostic.file] = None if text is None else text.split("\n")
    lines = cache[diagnostic.file]
    if lines is None or diagnostic.line > len(lines):
        return None
    return lines[diagnostic.line - 1].rstrip("\r")


def format_text(diagnostics: Sequence[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """``file:line:col: error: message`` then the source line and a caret under the column.

    ``sources`` maps file names to their text when it is not on disk (or already read).
    """
    cache: dict[str, list[str] | None] = {}
    out: list[str] = []
    for d in diagnostics:
        out.append(f"{d.location}: {d.severity.value}: {d.message}")
        line = _source_line(d, sources or {}, cache)
        if line is not None:
            out.append(f"    {line}")
            if d.column > 0:
                # Keep tabs so the caret lines up under tab-indented text.
                pad = "".join(ch if ch == "\t" else " " for ch in line[: d.column - 1])
                out.append(f"    {pad}^")
    return "\n".join(out) + ("\n" if out else "")


def _github_escape(value: str, *, property_value: bool) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def format_github(
    diagnostics: Sequence[Diagnostic], sources: Mapping[str, str] | None = None
) -> str:
    """GitHub Actions workflow commands: ``::error file=…,line=…,col=…::message``."""
    out: list[str] = []
    for d in diagnostics:
        props = [f"file={_github_escape(d.file, property_value=True)}"]
        if d.line > 0:
            props.append(f"line={d.line}")
            if d.column > 0:
                props.append(f"col={d.column}")
        props.append(f"title={_github_escape(d.code, property_value=True)}")
        message = _github_escape(d.message, property_value=False)
        out.append(f"::{d.severity.value} {','.join(props)}::{message}")
    return "\n".join(out) + ("\n" if out else "")


def format_json(diagnostics: Sequence[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """A JSON array of objects with the fields of `Diagnostic`."""
    return json.dumps([asdict(d) for d in diagnostics], indent=2) + "\n"


Formatter = Callable[[Sequence[Diagnostic], Mapping[str, str] | None], str]

FORMATTERS: dict[str, Formatter] = {
    "text": format_text,
    "github": format_github,
    "json": format_json,
}


def format_diagnostics(
    diagnostics: Sequence[Diagnostic],
    fmt: str = "text",
    sources: Mapping[str, str] | None = None,
) -> str:
    try:
        formatter = FORMATTERS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown diagnostics format {fmt!r}; choose one of {', '.join(FORMATTERS)}"
        ) from None
    return formatter(diagnostics, sources)
