"""`invoke lint` on caproni.yaml: config diagnostics through the lint entry point."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

from invoke.program import Program

import caproni_tasks
from caproni_tasks.diagnostics import Severity
from caproni_tasks.lint.config_file import lint_config_file

MAIN = (
    "version: 2\nreloaders:\n  svc:\n    type: process\n"
    "    process:\n      processes:\n        web: {command: run}\n"
)


def test_lint_config_file_reports_load_diagnostics(tmp_path: Path) -> None:
    path = tmp_path / "caproni.yaml"
    path.write_text("version: 2\ncluster: {}\nreloaders:\n  web:\n    type: process\n")
    found = lint_config_file(path)
    assert [(d.line, d.severity, d.code) for d in found] == [
        (2, Severity.NOTICE, "ignored-section"),
        (5, Severity.ERROR, "missing-section"),
    ]


def test_linting_the_overlay_checks_it_on_top_of_its_main_file(tmp_path: Path) -> None:
    (tmp_path / "caproni.yaml").write_text(MAIN)
    overlay = tmp_path / "caproni.local.yaml"
    overlay.write_text("reloaders:\n  svc:\n    edit_mode: perhaps\n")
    (error,) = lint_config_file(overlay)
    assert (error.file, error.line, error.code) == (str(overlay), 3, "invalid-value")


def test_an_overlay_alone_is_checked_as_a_config(tmp_path: Path) -> None:
    overlay = tmp_path / "caproni.local.yaml"
    overlay.write_text("reloaders: {}\n")
    (error,) = lint_config_file(overlay)
    assert error.code == "missing-key"


def test_invoke_lint_dispatches_yaml_files(tmp_path: Path) -> None:
    path = tmp_path / "caproni.yaml"
    path.write_text(MAIN.replace("web: {command: run}", "web:\n          command: run ${NOPE}"))
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            Program(namespace=caproni_tasks.namespace(), version="test").run(
                ["invoke", "lint", "--file", str(path)], exit=False
            )
        except SystemExit as exc:
            assert exc.code == 1
        else:
            raise AssertionError("lint did not fail")
    text = out.getvalue()
    assert f"{path}:8:24: error: unknown variable 'NOPE'" in text
    assert "    " + "          command: run ${NOPE}\n" + " " * 27 + "^" in text


def test_lint_reports_the_reloader_checks_of_validate(tmp_path: Path) -> None:
    """`invoke lint` and `invoke validate` agree on caproni.yaml: a kind's own checks
    (here an unknown stop signal and a missing process directory) are in both."""
    path = tmp_path / "caproni.yaml"
    path.write_text(
        "version: 2\nreloaders:\n  svc:\n    type: process\n    process:\n"
        "      processes:\n        web:\n          command: run\n"
        "          directory: nowhere\n"
    )
    found = lint_config_file(path)
    assert [(d.line, d.severity, d.code) for d in found] == [
        (7, Severity.ERROR, "process-directory")
    ]
    from caproni_tasks.config import load_config
    from caproni_tasks.reloader import validate_reloaders

    loaded = load_config(path)
    assert loaded.config is not None
    assert found == [*loaded.diagnostics, *validate_reloaders(loaded.config)]


def test_lint_of_a_broken_file_runs_no_reloader_checks(tmp_path: Path) -> None:
    path = tmp_path / "caproni.yaml"
    path.write_text("version: 2\nreloaders:\n  svc:\n    type: nope\n    nope: {}\n  x: 1\n")
    found = lint_config_file(path)
    assert found and all(d.code != "reloader-type" for d in found)


def test_a_caproni_file_lints_with_only_the_cluster_notice() -> None:
    """The Caproni-shaped example loads and every kind in it (mirror, skaffold, process)
    is available: repositories that are not cloned are not checked, and the only
    diagnostic is the notice about the cluster sections."""
    example = Path(__file__).resolve().parent.parent / "examples" / "caproni-v2" / "caproni.yaml"
    found = lint_config_file(example)
    assert [d for d in found if d.severity is Severity.ERROR] == []
    assert [d.code for d in found if d.severity is not Severity.ERROR] == ["ignored-section"]


def test_runtime_variable_urls_that_cannot_open_are_errors(tmp_path: Path) -> None:
    """Their processes would wait for a value forever: lint and validate say why."""
    path = tmp_path / "caproni.yaml"
    path.write_text(
        "version: 2\nruntimevars:\n  A: nope://x\n  B: file://./b.txt?decoder=wat\n"
        "  C: file://./c.txt?decoder=json\n  D: file://./d.txt?decoder=string&every=1s\n"
        "  E: file://./e.txt?wait=soon\nreloaders: {}\n"
    )
    found = lint_config_file(path)
    assert [(d.line, d.column, d.code) for d in found] == [
        (3, 3, "runtimevar-url"),
        (4, 3, "runtimevar-url"),
        (6, 3, "runtimevar-url"),
        (7, 3, "runtimevar-url"),
    ]
    assert 'no opener for scheme "nope" (known: ' in found[0].message
    assert "file" in found[0].message.rpartition("known: ")[2]
    assert 'unsupported decoder "wat"' in found[1].message
    assert 'invalid query parameter "every"' in found[2].message
    assert 'invalid wait "soon"' in found[3].message
    assert not list(tmp_path.glob("*.txt"))  # nothing opened or created
