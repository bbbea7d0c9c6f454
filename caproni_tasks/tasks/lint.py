"""``invoke lint``: every ensure file, versions file and caproni.yaml checked, diagnostics out."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.tasks import task

from caproni_tasks.tasks._common import (
    checked_path,
    fail,
    listed,
    print_diagnostics,
    setting_path,
)

FORMATS = ("text", "github", "json")


@task(
    auto_shortflags=False,
    iterable=["file"],
    help={
        "file": "File to check (repeatable; files may also follow a '--'): ensure files, "
        "versions files (*.versions), caproni.yaml. "
        "Default: the configured ensure file and config, where they exist.",
        "format": "Output format: text (with source and caret), github (annotations) or json.",
    },
)
def lint(c: Context, file: list[str] | None = None, format: str = "text") -> None:
    """Check ensure files, versions files and caproni.yaml; exit 1 on errors.

    Nothing is changed. A versions file is checked on its own and against the ensure
    files beside it that name it (fix stale ones with ``invoke ensure.resolve``).
    Usage: ``invoke lint [--format F] [--file F ...] [-- F ...]``.
    """
    import shlex

    from caproni_tasks.diagnostics import has_errors
    from caproni_tasks.lint import lint_files

    if format not in FORMATS:
        fail(f"unknown --format {format!r}: choose one of {', '.join(FORMATS)}", 2)
    names = listed(file) + shlex.split(getattr(c, "remainder", "") or "")
    paths = [checked_path(p, "--file") for p in names]
    if not paths:
        candidates = [setting_path(c, "ensure_file"), setting_path(c, "config")]
        paths = [p for p in candidates if p.exists()]
        if not paths:
            fail(
                "nothing to lint: neither "
                + " nor ".join(str(p) for p in candidates)
                + " exists; name files with --file",
                2,
            )
    report = lint_files(paths)
    print_diagnostics(report.diagnostics, format, report.sources)
    if has_errors(report.diagnostics):
        raise SystemExit(1)
    if format == "text":
        # On stderr: stdout carries only diagnostics, so it can be piped or parsed.
        checked = ", ".join(str(p) for p in paths)
        print(f"ok: no errors in {checked}", file=sys.stderr)
