"""Fuzz probe: byte-level mutations of real ensure and versions files.

tests/test_ensure_properties.py feeds the parsers arbitrary *text*; this feeds them
*files* that are nearly right (examples with a few bytes changed: controls, NUL,
invalid UTF-8, BOM, CR, brackets...), through the parsers and through `lint_files`.
Only `EnsureFileError`s and diagnostics may come out.
"""

from __future__ import annotations

from pathlib import Path

from fuzz_mutations import fuzz_settings, mutated
from hypothesis import given, settings

from caproni_tasks.ensure import EnsureFileError, parse, parse_versions_file
from caproni_tasks.ensure.versions_file import HEADER
from caproni_tasks.lint import lint_files

REPO = Path(__file__).resolve().parent.parent
ENSURE_BASES = [path.read_bytes() for path in sorted(REPO.glob("examples/**/*.ensure"))]
LINUX = {"os": "linux", "arch": "amd64", "platform": "linux-amd64"}
IID = "S" * 43 + "C"
VERSIONS_BASES = [
    (
        HEADER
        + f"\ndemo/tools/jq/linux-amd64\n\tversion:1.7.1\n\t{IID}\n"
        + f"\ndemo/python/wheels/watchdog\n\tversion:4.0.0\n\t{'a' * 40}\n"
    ).encode()
]
SETTINGS = fuzz_settings(120)


def test_bases_parse() -> None:
    assert ENSURE_BASES
    for base in ENSURE_BASES:
        parse(base.decode(), host_args=LINUX)
    parse_versions_file(VERSIONS_BASES[0].decode())


@SETTINGS
@given(mutated(ENSURE_BASES))
def test_mutated_ensure_file_parses_or_raises_ensure_file_error(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        parsed = parse(text, host_args=LINUX)
    except EnsureFileError as exc:
        assert str(exc)
        return
    assert parse(parsed.serialize(), host_args=LINUX) == parsed


@SETTINGS
@given(mutated(VERSIONS_BASES))
def test_mutated_versions_file_parses_or_raises_ensure_file_error(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        versions = parse_versions_file(text)
    except EnsureFileError as exc:
        assert str(exc)
        return
    assert parse_versions_file(versions.serialize()) == versions


@settings(SETTINGS, max_examples=60)
@given(mutated(ENSURE_BASES), mutated(VERSIONS_BASES))
def test_mutated_files_lint_to_diagnostics(workdir: Path, ensure: bytes, versions: bytes) -> None:
    ensure_path = workdir / "tools.ensure"
    ensure_path.write_bytes(b"$ResolvedVersions tools.versions\n" + ensure)
    (workdir / "tools.versions").write_bytes(versions)
    report = lint_files([ensure_path])
    for d in report.diagnostics:
        assert "\n" not in d.message and d.message.strip(), d
        assert d.line >= 0 and d.column >= 0, d
