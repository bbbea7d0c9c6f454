"""``invoke lint``: every ensure file and caproni.yaml checked, diagnostics out."""

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


@task(
    iterable=["file"],
    help={
        "file": "File to check (repeatable): ensure files, caproni.yaml. "
        "Default: the configured ensure file and config, where they exist.",
        "format": "Output format: text (with source and caret), github (annotations) or json.",
    },
)
def lint(c: Context, file: list[str] | None = None, format: str = "text") -> None:
    """Check ensure files and caproni.yaml without changing anything; exit 1 on errors."""
    from caproni_tasks.diagnostics import has_errors
    from caproni_tasks.lint import lint_files

    paths = [checked_path(p, "--file") for p in listed(file)]
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
