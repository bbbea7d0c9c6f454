"""Offline versions-file checks behind ``invoke lint``."""

from __future__ import annotations

from pathlib import Path

from caproni_tasks.ensure import VersionsFile
from caproni_tasks.lint import lint_files
from caproni_tasks.lint.versions_file import lint_versions_file

IID_A = "A" * 43 + "C"
IID_B = "B" * 42 + "AC"


def write(tmp_path: Path, ensure: str, versions: VersionsFile | str | None) -> Path:
    path = tmp_path / "tools.ensure"
    path.write_text(ensure)
    if versions is not None:
        text = versions if isinstance(versions, str) else versions.serialize()
        (tmp_path / "tools.versions").write_text(text)
    return path


def versions(*entries: tuple[str, str, str]) -> VersionsFile:
    out = VersionsFile()
    for entry in entries:
        out.add(*entry)
    return out


def test_nothing_to_check_without_resolved_versions(tmp_path: Path) -> None:
    path = write(tmp_path, "a/b latest\n", None)
    assert lint_versions_file(path, path.read_text()) == []


def test_a_versions_file_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "$VerifiedPlatform linux-amd64\n$ResolvedVersions tools.versions\n\na/b latest\n",
        None,
    )
    [found] = lint_versions_file(path, path.read_text())
    assert (found.file, found.line, found.column, found.code) == (
        str(path),
        2,
        19,
        "versions-file-missing",
    )
    assert found.message == (
        f"the $ResolvedVersions file {tmp_path / 'tools.versions'} does not exist; "
        "run 'invoke ensure.resolve' to create it"
    )
    assert lint_files([path]).diagnostics == [found]


def test_complete_versions_file(tmp_path: Path) -> None:
    text = (
        "$ResolvedVersions tools.versions\n$VerifiedPlatform linux-amd64 mac-arm64\n\n"
        "a/b latest\ntools/${platform} version:1\n"
    )
    found = versions(
        ("a/b", "latest", IID_A),
        ("tools/linux-amd64", "version:1", IID_A),
        ("tools/mac-arm64", "version:1", IID_B),
    )
    path = write(tmp_path, text, found)
    assert lint_versions_file(path, text) == []
    assert lint_files([path]).diagnostics == []


def test_missing_entries_point_at_the_package_line(tmp_path: Path) -> None:
    text = (
        "$ResolvedVersions tools.versions\n$VerifiedPlatform linux-amd64 mac-arm64\n\n"
        "a/b latest\ntools/${platform}   version:1\n"
    )
    path = write(
        tmp_path,
        text,
        versions(("a/b", "latest", IID_A), ("tools/linux-amd64", "version:1", IID_A)),
    )
    diagnostics = lint_versions_file(path, text)
    assert len(diagnostics) == 1
    d = diagnostics[0]
    assert (d.file, d.line, d.column, d.code) == (str(path), 5, 21, "versions-file-stale")
    assert "tools/mac-arm64@version:1" in d.message
    assert "not in the versions file" in d.message
    assert "mac-arm64" in d.message and "invoke ensure.resolve" in d.message
    assert lint_files([path]).diagnostics == diagnostics


def test_the_same_miss_on_every_platform_is_reported_once(tmp_path: Path) -> None:
    text = (
        "$ResolvedVersions tools.versions\n$VerifiedPlatform linux-amd64 mac-arm64\n\na/b latest\n"
    )
    path = write(tmp_path, text, versions(("c/d", "latest", IID_A)))
    diagnostics = [d for d in lint_versions_file(path, text) if d.file == str(path)]
    assert len(diagnostics) == 1
    assert "linux-amd64, mac-arm64" in diagnostics[0].message


def test_syntax_errors_point_into_the_versions_file(tmp_path: Path) -> None:
    text = "$ResolvedVersions tools.versions\n\na/b latest\n"
    path = write(tmp_path, text, "# header\n\na/b\nlatest\n")
    diagnostics = lint_versions_file(path, text)
    assert len(diagnostics) == 1
    d = diagnostics[0]
    assert d.file == str(tmp_path / "tools.versions")
    assert d.line == 4
    assert d.code == "versions-file-syntax"
    assert "unexpected EOF, expecting an instance ID" in d.message


def test_unused_entries_point_into_the_versions_file(tmp_path: Path) -> None:
    text = "$ResolvedVersions tools.versions\n$VerifiedPlatform linux-amd64\n\na/new latest\n"
    stale = versions(("a/b", "latest", IID_A), ("a/old", "version:1", IID_B))
    path = write(tmp_path, text, stale)
    found = lint_versions_file(path, text)
    assert [(d.file, d.line, d.code) for d in found] == [
        (str(path), 4, "versions-file-stale"),
        (str(tmp_path / "tools.versions"), 4, "versions-file-stale"),
        (str(tmp_path / "tools.versions"), 8, "versions-file-stale"),
    ]
    assert "a/new@latest" in found[0].message and "not in the versions file" in found[0].message
    assert found[1].message.startswith("a/b latest is not used by the ensure file any more")
    assert found[2].message.startswith("a/old version:1 is not used")

    text = "$ResolvedVersions tools.versions\n\n${bogus}/x latest\n"  # resolving stops early
    path = write(tmp_path, text, stale)
    assert all("not used" not in d.message for d in lint_versions_file(path, text))
