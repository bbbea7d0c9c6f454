"""Check every ensure file and config without side effects, as `Diagnostic`s.

One entry point for ``invoke lint`` (and editors/CI through it): each file is
dispatched by kind to the checker of its area.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from caproni_tasks.diagnostics import Diagnostic

__all__ = ["LintReport", "is_config_file", "lint_files"]

CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class LintReport:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: File texts already read, so formatters need not read them again.
    sources: dict[str, str] = field(default_factory=dict)


def is_config_file(path: Path) -> bool:
    return path.suffix.lower() in CONFIG_SUFFIXES


def lint_files(paths: Iterable[Path]) -> LintReport:
    report = LintReport()
    for path in paths:
        shown = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            report.diagnostics.append(
                Diagnostic.error(shown, 0, 0, "file-not-found", "no such file")
            )
            continue
        except (OSError, UnicodeDecodeError) as exc:
            report.diagnostics.append(
                Diagnostic.error(shown, 0, 0, "unreadable", f"cannot read the file: {exc}")
            )
            continue
        report.sources[shown] = text
        if is_config_file(path):
            from caproni_tasks.lint.config_file import lint_config_file

            report.diagnostics.extend(lint_config_file(path))
        else:
            from caproni_tasks.lint.ensure_file import lint_ensure_file
            from caproni_tasks.lint.versions_file import lint_versions_file

            found = lint_ensure_file(path, text)
            report.diagnostics.extend(found)
            if not found:
                report.diagnostics.extend(lint_versions_file(path, text))
    return report
