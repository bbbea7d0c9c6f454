"""Check every ensure file and config without side effects, as `Diagnostic`s.

One entry point for ``invoke lint`` (and editors/CI through it): each file is
dispatched by kind to the checker of its area.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.userfiles import read_regular_file

__all__ = ["LintReport", "is_config_file", "is_versions_file", "lint_files", "read_source"]

CONFIG_SUFFIXES = (".yaml", ".yml")
#: Files read as ``$ResolvedVersions`` files rather than ensure files.
VERSIONS_SUFFIXES = (".versions",)


@dataclass
class LintReport:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: File texts already read, so formatters need not read them again.
    sources: dict[str, str] = field(default_factory=dict)


def is_config_file(path: Path) -> bool:
    return path.suffix.lower() in CONFIG_SUFFIXES


def is_versions_file(path: Path) -> bool:
    return path.suffix.lower() in VERSIONS_SUFFIXES


def read_source(path: Path, shown: str, *, missing_hint: str = "") -> str | Diagnostic:
    """The file's text, or a diagnostic saying plainly why it cannot be read.

    Undecodable bytes are reported at their line and column, OS errors by their reason
    without Python's ``[Errno N]`` decoration.
    """
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        return Diagnostic.error(shown, 0, 0, "file-not-found", f"no such file{missing_hint}")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Diagnostic.error(shown, 0, 0, "unreadable", f"cannot read the file: {reason}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return Diagnostic.error(
            shown,
            line,
            column,
            "not-utf8",
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded; "
            "save the file as UTF-8",
        )


def lint_files(paths: Iterable[Path]) -> LintReport:
    report = LintReport()
    for path in paths:
        shown = str(path)
        text = read_source(path, shown)
        if isinstance(text, Diagnostic):
            report.diagnostics.append(text)
            continue
        report.sources[shown] = text
        if is_config_file(path):
            from caproni_tasks.lint.config_file import lint_config_file

            report.diagnostics.extend(lint_config_file(path))
        elif is_versions_file(path):
            from caproni_tasks.lint.versions_file import lint_versions_file_alone

            report.diagnostics.extend(lint_versions_file_alone(path, text))
        else:
            from caproni_tasks.lint.ensure_file import lint_ensure_file
            from caproni_tasks.lint.versions_file import lint_versions_file

            found = lint_ensure_file(path, text)
            report.diagnostics.extend(found)
            if not found:
                report.diagnostics.extend(lint_versions_file(path, text))
    # An ensure file and its versions file named together find the same problems twice.
    report.diagnostics = list(dict.fromkeys(report.diagnostics))
    return report
