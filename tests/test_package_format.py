"""The package file format: deterministic builds, hashing, and a reader that refuses
malicious or broken archives before anything is extracted."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers_packages import (
    File,
    FileSpec,
    Link,
    RawEntry,
    build,
    raw_package,
    symlink_entry,
    write_tree,
)

from caproni_tasks.ensure import instance_id_from_sha256, validate_instance_id
from caproni_tasks.packages.format import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    PackageFormatError,
    PackageReader,
    build_package,
    instance_id_of_file,
)

TREE: dict[str, FileSpec] = {
    "bin/tool": File("#!/bin/sh\necho hi\n", executable=True),
    "share/data.txt": File("data\n", writable=False),
    "share/writable.cfg": File("cfg", writable=True),
    "b.txt": "b",
    "a/z.txt": "z",
    "link-to-tool": Link("bin/tool"),
    "share/up": Link("../b.txt"),
    "dir-link": Link("share"),
}


def test_same_tree_twice_gives_identical_bytes_and_id(tmp_path: Path) -> None:
    first, iid1 = build(tmp_path, "test/pkg", TREE)
    second, iid2 = build(tmp_path, "test/pkg", TREE)
    assert first.read_bytes() == second.read_bytes()
    assert iid1 == iid2
    validate_instance_id(iid1)
    assert len(iid1) == 44 and iid1.endswith("C")
    assert iid1 == instance_id_from_sha256(hashlib.sha256(first.read_bytes()).digest())
    assert instance_id_of_file(first) == iid1


def test_build_ignores_timestamps_and_creation_order(tmp_path: Path) -> None:
    first, iid1 = build(tmp_path, "test/pkg", TREE)
    reordered = dict(reversed(list(TREE.items())))
    src = write_tree(tmp_path / "other", reordered)
    for path in src.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (1_000_000, 1_000_000))
    out = tmp_path / "other.cipd"
    assert build_package(src, "test/pkg", out) == iid1
    assert out.read_bytes() == first.read_bytes()


def test_different_content_or_name_changes_id(tmp_path: Path) -> None:
    _, base = build(tmp_path, "test/pkg", {"a": "1"})
    _, content = build(tmp_path, "test/pkg", {"a": "2"})
    _, name = build(tmp_path, "test/other", {"a": "1"})
    _, mode = build(tmp_path, "test/pkg", {"a": File("1", executable=True)})
    assert len({base, content, name, mode}) == 4


def test_entries_keep_modes_and_symlinks(tmp_path: Path) -> None:
    pkg, _ = build(tmp_path, "test/pkg", TREE, preserve_writable=True)
    with PackageReader(pkg, expected_package="test/pkg") as reader:
        assert reader.manifest == Manifest("test/pkg")
        by_name = {e.name: e for e in reader.entries}
        assert list(by_name) == sorted(by_name)
        assert MANIFEST_NAME not in by_name
        assert by_name["bin/tool"].executable and not by_name["share/data.txt"].executable
        assert by_name["share/writable.cfg"].writable
        assert not by_name["share/data.txt"].writable  # source file without owner-write
        assert by_name["link-to-tool"] == FileEntry(
            "link-to-tool", len("bin/tool"), True, True, "bin/tool", by_name["link-to-tool"].crc32
        )
        assert by_name["dir-link"].symlink_target == "share"
        assert by_name["share/up"].is_symlink
        with reader.open(by_name["bin/tool"]) as stream:
            assert stream.read() == b"#!/bin/sh\necho hi\n"
        assert by_name["bin/tool"].size == len(b"#!/bin/sh\necho hi\n")


def test_files_are_read_only_unless_preserve_writable(tmp_path: Path) -> None:
    pkg, _ = build(tmp_path, "test/pkg", {"w": File("x", writable=True)})
    with PackageReader(pkg) as reader:
        assert not reader.entries[0].writable


def test_manifest_fields_round_trip(tmp_path: Path) -> None:
    pkg, _ = build(
        tmp_path, "test/pkg", {"a": "1"}, install_mode="copy", version_file="VERSION.json"
    )
    with PackageReader(pkg) as reader:
        assert reader.manifest == Manifest("test/pkg", "copy", "VERSION.json")
    with zipfile.ZipFile(pkg) as archive:
        info = archive.getinfo(MANIFEST_NAME)
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert b'"format_version": "1.1"' in archive.read(info)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"install_mode": "hardlink"}, "unknown install_mode"),
        ({"version_file": "../v.json"}, "bad version_file"),
        ({"version_file": ".cipdpkg/v.json"}, "reserved"),
    ],
)
def test_build_refuses_bad_manifest_fields(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(PackageFormatError, match=message):
        build(tmp_path, "test/pkg", {"a": "1"}, **kwargs)


def test_build_refuses_bad_package_name(tmp_path: Path) -> None:
    with pytest.raises(PackageFormatError, match="invalid package name"):
        build(tmp_path, "Test/Pkg", {"a": "1"})


@pytest.mark.parametrize(
    "files",
    [
        {"a": Link("../outside")},
        {"a": Link("/etc/passwd")},
        {"d/a": Link("../../x")},
        {".cipdpkg/evil": "x"},
    ],
)
def test_build_refuses_escaping_links_and_reserved_names(
    tmp_path: Path, files: dict[str, Link | str]
) -> None:
    out = tmp_path / "out.cipd"
    with pytest.raises(PackageFormatError):
        build(tmp_path, "test/pkg", files, out=out)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.cipd.*"))


def test_build_refuses_names_that_are_not_utf8(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / os.fsdecode(b"bad\xff")).write_text("x")
    with pytest.raises(PackageFormatError, match="not valid UTF-8"):
        build_package(src, "test/pkg", tmp_path / "o.cipd")


def test_build_reports_unreadable_files(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"secret": "x"})
    (src / "secret").chmod(0)
    if os.access(src / "secret", os.R_OK):
        pytest.skip("running as a user who can read anything")
    with pytest.raises(PackageFormatError, match="secret") as caught:
        build_package(src, "test/pkg", tmp_path / "o.cipd")
    assert caught.value.error_code == "io_error"
    assert not (tmp_path / "o.cipd").exists()


def test_build_refuses_missing_source(tmp_path: Path) -> None:
    with pytest.raises(PackageFormatError, match="not a directory") as caught:
        build_package(tmp_path / "nope", "test/pkg", tmp_path / "o.cipd")
    assert caught.value.error_code == "io_error"


def test_build_skips_output_inside_source(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a": "1"})
    iid = build_package(src, "test/pkg", src / "self.cipd")
    assert build_package(src, "test/pkg", src / "self.cipd") == iid


def test_large_file_streams(tmp_path: Path) -> None:
    blob = os.urandom(3 << 20)
    pkg, iid = build(tmp_path, "test/pkg", {"big.bin": blob})
    with PackageReader(pkg) as reader, reader.open("big.bin") as stream:
        assert hashlib.sha256(stream.read()).digest() == hashlib.sha256(blob).digest()
    assert instance_id_of_file(pkg) == iid


# --- refusals ------------------------------------------------------------------------


def refused(path: Path, *, expected: str | None = None) -> PackageFormatError:
    with pytest.raises(PackageFormatError) as caught:
        PackageReader(path, expected_package=expected)
    assert str(path) in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("/etc/x", "absolute"),
        ("C:/x", "drive letter"),
        ("a\\..\\x", "backslash"),
        ("a//b", "not a clean path"),
        ("./a", "not a clean path"),
    ],
)
def test_reader_refuses_bad_entry_names(tmp_path: Path, name: str, reason: str) -> None:
    error = refused(raw_package(tmp_path / "p.zip", [(name, "x")]))
    assert reason in str(error)
    assert error.error_code == "bad_argument_error"
    assert repr(name)[1:-1] in str(error) or "NUL" in reason


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([symlink_entry("a", "../x")], "outside the package"),
        ([symlink_entry("d/a", "../../x")], "outside the package"),
        ([symlink_entry("a", "/etc/passwd")], "absolute target"),
        ([symlink_entry("b", ".."), symlink_entry("a", "b/x")], "outside the package"),
        (
            [symlink_entry("d/up", ".."), symlink_entry("a", "d/up/d/up/..")],
            "outside the package",
        ),
        ([symlink_entry("a", "b"), symlink_entry("b", "a/x")], "too many levels"),
        ([symlink_entry("a", "d"), RawEntry("a/evil", "x")], "lies under the symlink"),
        ([RawEntry("a", "x"), RawEntry("a/b", "y")], "lies under the file"),
    ],
)
def test_reader_refuses_escaping_symlinks(
    tmp_path: Path, entries: list[RawEntry], reason: str
) -> None:
    assert reason in str(refused(raw_package(tmp_path / "p.zip", entries)))


def test_reader_accepts_links_that_stay_inside(tmp_path: Path) -> None:
    entries = [
        symlink_entry("d/up", ".."),
        symlink_entry("a", "d/up/d/up/x"),
        symlink_entry("d/e/f", "../../a"),
        RawEntry("x", "1"),
    ]
    with PackageReader(raw_package(tmp_path / "p.zip", entries)) as reader:
        assert {e.name for e in reader.entries} == {"d/up", "a", "d/e/f", "x"}


def test_reader_refuses_nul_in_names(tmp_path: Path) -> None:
    # zipfile cuts names at NUL when writing, so patch the bytes afterwards.
    path = raw_package(tmp_path / "p.zip", [("aXXb", "x")])
    path.write_bytes(path.read_bytes().replace(b"aXXb", b"a\x00Xb"))
    assert "NUL" in str(refused(path))


def test_reader_refuses_duplicate_entries(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        raw_package(path, [("a", "1"), ("a", "2")])
    assert "duplicate entry" in str(refused(path))


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"format_version": "1", "package_name": "a"}', "unsupported format_version"),
        ('{"format_version": "1.1"}', "package_name is missing"),
        ('{"format_version": "1.1", "package_name": "A/B"}', "invalid package name"),
        ('{"format_version": "1.1", "package_name": 3}', "must be a string"),
        (
            '{"format_version": "1.1", "package_name": "a", "install_mode": "x"}',
            "unknown install_mode",
        ),
    ],
)
def test_reader_refuses_bad_manifests(tmp_path: Path, manifest: str, reason: str) -> None:
    error = refused(raw_package(tmp_path / "p.zip", [("a", "1")], manifest=manifest))
    assert reason in str(error)
    assert MANIFEST_NAME in str(error)


def test_reader_refuses_missing_manifest(tmp_path: Path) -> None:
    path = raw_package(tmp_path / "p.zip", [("a", "1")], package=None)
    assert "no .cipdpkg/manifest.json" in str(refused(path))


def test_reader_refuses_wrong_package_name(tmp_path: Path) -> None:
    pkg, _ = build(tmp_path, "test/pkg", {"a": "1"})
    error = refused(pkg, expected="test/other")
    assert "'test/pkg'" in str(error) and "'test/other'" in str(error)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_reader_refuses_truncated_files(tmp_path: Path, keep: float) -> None:
    pkg, _ = build(tmp_path, "test/pkg", {"a": os.urandom(10_000), "b": "x"})
    data = pkg.read_bytes()
    pkg.write_bytes(data[: int(len(data) * keep)])
    assert refused(pkg).error_code == "io_error"


def test_reader_refuses_missing_and_non_zip_files(tmp_path: Path) -> None:
    assert refused(tmp_path / "missing.zip").error_code == "io_error"
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"definitely not a zip" * 100)
    assert refused(junk).error_code == "io_error"


def test_corrupt_entry_body_fails_on_read(tmp_path: Path) -> None:
    payload = b"A" * 5000
    pkg, _ = build(tmp_path, "test/pkg", {"a": File(payload)})
    data = bytearray(pkg.read_bytes())
    with zipfile.ZipFile(pkg) as archive:
        info = archive.getinfo("a")
    body = info.header_offset + 30 + len(b"a") + 5  # inside the compressed stream
    data[body] ^= 0xFF
    pkg.write_bytes(bytes(data))
    with (
        PackageReader(pkg) as reader,
        pytest.raises(PackageFormatError) as caught,
        reader.open("a") as stream,
    ):
        stream.read()
    assert caught.value.error_code == "io_error"
    assert "'a'" in str(caught.value)


def test_service_files_other_than_manifest_are_not_entries(tmp_path: Path) -> None:
    path = raw_package(tmp_path / "p.zip", [(".cipdpkg/extra", "x"), ("a", "1")])
    with PackageReader(path) as reader:
        assert [e.name for e in reader.entries] == ["a"]
