"""Fuzz probe: byte-level mutations of the example caproni.yaml files through the
library (`load_config`, `lint_files`). Only diagnostics may come out, never an
exception, and each is one line with a place in a file we read."""

from __future__ import annotations

from pathlib import Path

from fuzz_mutations import fuzz_settings, mutated
from hypothesis import given, settings

from caproni_tasks.config import load_config
from caproni_tasks.diagnostics import Diagnostic, has_errors
from caproni_tasks.lint import lint_files

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(REPO.glob("examples/**/caproni.yaml"))
BASES = [path.read_bytes() for path in EXAMPLES]
SETTINGS = fuzz_settings(120)


def check(diagnostics: list[Diagnostic], files: set[str]) -> None:
    for d in diagnostics:
        assert d.file in files, d
        assert "\n" not in d.message and d.message.strip(), d
        assert d.line >= 0 and d.column >= 0, d


def test_bases_are_valid() -> None:
    assert len(EXAMPLES) >= 2
    for path in EXAMPLES:
        assert load_config(path, cache=False).ok, path


@SETTINGS
@given(mutated(BASES))
def test_mutated_config_gives_only_diagnostics(workdir: Path, data: bytes) -> None:
    path = workdir / "caproni.yaml"
    path.write_bytes(data)
    result = load_config(path, cache=False)
    check(result.diagnostics, {str(path)})
    assert (result.config is None) == has_errors(result.diagnostics)


@settings(SETTINGS, max_examples=40)
@given(mutated(BASES))
def test_mutated_config_lints_to_diagnostics(workdir: Path, data: bytes) -> None:
    path = workdir / "caproni.yaml"
    path.write_bytes(data)
    report = lint_files([path])
    assert all("\n" not in d.message for d in report.diagnostics)


@settings(SETTINGS, max_examples=40)
@given(mutated(BASES), mutated(BASES))
def test_mutated_overlay_gives_only_diagnostics(workdir: Path, main: bytes, overlay: bytes) -> None:
    path = workdir / "caproni.yaml"
    path.write_bytes(main)
    (workdir / "caproni.local.yaml").write_bytes(overlay)
    try:
        result = load_config(path, cache=False)
    finally:
        (workdir / "caproni.local.yaml").unlink()
    check(result.diagnostics, {str(path), str(workdir / "caproni.local.yaml")})
