"""Reference §9 (canonical form) and §10 (the resolved-versions file)."""

from __future__ import annotations

import hashlib

import pytest

from caproni_tasks.ensure import (
    EnsureFile,
    EnsureFileError,
    PackageDef,
    Pin,
    ResolvedFile,
    ValidationError,
    VersionsFile,
    VersionsFileError,
    instance_id_from_sha256,
    parse,
    parse_versions_file,
)
from caproni_tasks.ensure.versions_file import HEADER

LINUX = {"os": "linux", "arch": "amd64", "platform": "linux-amd64"}

REFERENCE_INPUT = """\
# tools
$ServiceURL https://chrome-infra-packages.appspot.com
$VerifiedPlatform linux-amd64 mac-arm64
$ParanoidMode CheckPresence
$OverrideInstallMode copy
$ResolvedVersions cipd.versions

infra/tools/luci/vpython/${platform}  git_revision:abc
infra/tools/cipd/${os}-${arch} latest
@Subdir python
python/wheels/pip version:8.1.2
@Subdir
zz/last/pkg   latest
@Subdir bin/${os=linux}
a/b latest
"""

REFERENCE_OUTPUT = """\
$ServiceURL https://chrome-infra-packages.appspot.com
$ParanoidMode CheckPresence
$ResolvedVersions cipd.versions
$OverrideInstallMode copy

$VerifiedPlatform linux-amd64
$VerifiedPlatform mac-arm64

infra/tools/cipd/${os}-${arch}        latest
infra/tools/luci/vpython/${platform}  git_revision:abc
zz/last/pkg                           latest

@Subdir bin/${os=linux}
a/b  latest

@Subdir python
python/wheels/pip  version:8.1.2
"""

IID = instance_id_from_sha256(hashlib.sha256(b"1").digest())
IID2 = instance_id_from_sha256(hashlib.sha256(b"2").digest())


def fmt(text: str) -> str:
    return parse(text, host_args=LINUX).serialize()


# --- §9 canonical serialization ----------------------------------------------------------


def test_reference_example() -> None:
    assert fmt(REFERENCE_INPUT) == REFERENCE_OUTPUT
    assert fmt(REFERENCE_OUTPUT) == REFERENCE_OUTPUT


def test_settings_in_fixed_order_then_one_blank_line() -> None:
    text = "$OverrideInstallMode copy\n$ResolvedVersions v\n$ServiceURL https://x\na latest\n"
    assert fmt(text) == (
        "$ServiceURL https://x\n$ResolvedVersions v\n$OverrideInstallMode copy\n\na  latest\n"
    )


def test_not_paranoid_is_not_written() -> None:
    assert fmt("$ParanoidMode NotParanoid\na latest\n") == "a  latest\n"


def test_platforms_one_per_line_then_blank_line() -> None:
    assert fmt("$VerifiedPlatform b-1 a-2\n$VerifiedPlatform b-1\nx v:1\n") == (
        "$VerifiedPlatform b-1\n$VerifiedPlatform a-2\n$VerifiedPlatform b-1\n\nx  v:1\n"
    )


def test_subdirs_in_byte_order_root_first() -> None:
    text = "@Subdir b\nx latest\n@Subdir B\ny latest\n@Subdir\nz latest\n@Subdir é\nw latest\n"
    assert fmt(text) == (
        "z  latest\n\n@Subdir B\ny  latest\n\n@Subdir b\nx  latest\n\n@Subdir é\nw  latest\n"
    )


def test_packages_sorted_stably_by_template_and_aligned() -> None:
    text = "long/name/here v:1\nb second\nb first\na latest\n"
    assert fmt(text) == (
        "a               latest\nb               second\nb               first\n"
        "long/name/here  v:1\n"
    )


def test_alignment_measures_names_in_utf8_bytes_and_pads_by_characters() -> None:
    # As the client: the width is the longest name in bytes ("é" is 2) plus one,
    # and the padding counts characters.
    assert fmt("é latest\n") == "é   latest\n"
    assert fmt("ab v:1\né v:2\n") == "ab  v:1\né   v:2\n"


def test_empty_subdirs_are_not_written() -> None:
    assert fmt("@Subdir empty\n@Subdir\na latest\n") == "a  latest\n"


def test_exactly_one_trailing_newline() -> None:
    assert fmt("$ServiceURL https://x\n\n\n") == "$ServiceURL https://x\n"
    assert fmt("$VerifiedPlatform a-b\n") == "$VerifiedPlatform a-b\n"
    assert fmt("a latest") == "a  latest\n"


def test_empty_file_serializes_to_empty_string() -> None:
    assert fmt("") == ""
    assert fmt("# only a comment\n\n") == ""


def test_comments_are_dropped() -> None:
    assert "#" not in fmt("# c\na latest # not a comment\n# d\n").replace("# not", "")


def test_empty_version_keeps_the_separator() -> None:
    assert fmt("lonely\n") == "lonely  \n"
    assert fmt(fmt("lonely\n")) == "lonely  \n"


def test_resolved_file_serializes_the_same_way() -> None:
    r = ResolvedFile(
        service_url="https://x",
        paranoid_mode="CheckPresence",
        override_install_mode="copy",
        packages_by_subdir={"sub": [Pin("zz", IID)], "": [Pin("b/long", IID2), Pin("a", IID)]},
    )
    assert r.serialize() == (
        "$ServiceURL https://x\n$ParanoidMode CheckPresence\n$OverrideInstallMode copy\n\n"
        f"a       {IID}\nb/long  {IID2}\n\n@Subdir sub\nzz  {IID}\n"
    )


def test_resolved_file_default_mode_not_written() -> None:
    assert ResolvedFile(packages_by_subdir={"": [Pin("a", IID)]}).serialize() == f"a  {IID}\n"


def test_ensure_file_equality_is_by_meaning() -> None:
    a = parse("a latest\nb v:1\n")
    b = parse("\n\nb v:1\n# x\na latest\n")
    assert a == b
    assert a != parse("a latest\n")
    assert parse("$ParanoidMode NotParanoid\n") == EnsureFile()
    assert EnsureFile(packages_by_subdir={"": [PackageDef("a", "v", 3)]}) == EnsureFile(
        packages_by_subdir={"": [PackageDef("a", "v", 9)]}
    )


# --- §10 versions file -------------------------------------------------------------------


def test_versions_file_serialization() -> None:
    v = VersionsFile()
    v.add("b/pkg", "latest", IID)
    v.add("a/pkg", "v:2", IID2)
    v.add("a/pkg", "v:1", IID)
    assert v.serialize() == (
        HEADER
        + f"\na/pkg\n\tv:1\n\t{IID}\n"
        + f"\na/pkg\n\tv:2\n\t{IID2}\n"
        + f"\nb/pkg\n\tlatest\n\t{IID}\n"
    )
    assert HEADER.count("\n") == 2
    assert all(line.startswith("#") for line in HEADER.splitlines())


def test_versions_file_round_trip_and_equality() -> None:
    v = VersionsFile()
    v.add("a", "latest", IID)
    v.add("b", IID2, IID2)
    assert parse_versions_file(v.serialize()) == v
    assert VersionsFile() == parse_versions_file(HEADER)
    assert v != VersionsFile()


def test_versions_file_parsing_is_lenient_about_spacing_and_comments() -> None:
    text = f"# c\n\n\n  a  \n# inner comment\n\tlatest\n {IID} \n\n\n\nb\nv:1\n{IID2}"
    v = parse_versions_file(text)
    assert v.resolve("a", "latest") == Pin("a", IID)
    assert v.resolve("b", "v:1") == Pin("b", IID2)


def test_versions_file_resolve() -> None:
    v = VersionsFile()
    v.add("a", "latest", IID)
    assert v.resolve("a", "latest") == Pin("a", IID)
    assert v("a", "latest") == Pin("a", IID)
    assert v.resolve("other", IID2) == Pin("other", IID2)
    with pytest.raises(VersionsFileError) as err:
        v.resolve("a", "stable")
    assert str(err.value) == "not in the versions file"


def test_versions_file_as_resolver_for_an_ensure_file() -> None:
    v = VersionsFile()
    v.add("t/linux-amd64", "latest", IID)
    f = parse("t/${platform} latest\nmissing v:1\n", host_args=LINUX)
    with pytest.raises(EnsureFileError) as err:
        f.resolve(v, template_args=LINUX)
    assert str(err.value) == "failed to resolve missing@v:1 (line 2): not in the versions file"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("A\nlatest\nIID\n", 1, 'invalid package name "A": must be a slash-separated path'),
        ("a\n\n", 2, "expecting a version name, not a new line"),
        ("a\nBAD VERSION\n", 2, 'bad version "BAD VERSION": not an instance ID, a ref or a tag'),
        ("a\nlatest\n\n", 3, "expecting an instance ID, not a new line"),
        ("a\nlatest\nnope\n", 3, 'not a valid package instance ID "nope"'),
        (
            "a\nlatest\nIID\nb\n",
            4,
            "expecting an empty line between each version definition triple",
        ),
        ("a\n", 1, "unexpected EOF, expecting a package version"),
        ("a\nlatest", 2, "unexpected EOF, expecting an instance ID"),
        (
            "a\nIID2\nIID\n",
            3,
            'version given as instance ID ("IID2") should resolve into that ID, not into "IID"',
        ),
    ],
)
def test_versions_file_errors(text: str, line: int, message: str) -> None:
    text = text.replace("IID2", IID2).replace("IID", IID)
    message = message.replace("IID2", IID2).replace("IID", IID)
    with pytest.raises(VersionsFileError) as err:
        parse_versions_file(text)
    assert str(err.value).startswith(f"failed to parse versions file (line {line}): {message}")
    assert err.value.line == line


def test_versions_file_comments_do_not_separate_triples() -> None:
    v = parse_versions_file(f"a\n# c\nlatest\n#\n{IID}\n")
    assert v.resolve("a", "latest") == Pin("a", IID)


def test_add_validates_all_three_values() -> None:
    v = VersionsFile()
    with pytest.raises(ValidationError, match="invalid package name"):
        v.add("A", "latest", IID)
    with pytest.raises(ValidationError, match="bad version"):
        v.add("a", "NOPE", IID)
    with pytest.raises(ValidationError, match="not a valid package instance ID"):
        v.add("a", "latest", "x")
    with pytest.raises(VersionsFileError) as err:
        v.add("a", IID, IID2)
    assert str(err.value) == (
        f'version given as instance ID ("{IID}") should resolve into that ID, not into "{IID2}"'
    )
    assert len(v) == 0


def test_versions_file_accepts_any_hash_algorithm() -> None:
    import base64

    future = base64.urlsafe_b64encode(bytes(48) + b"\x05").rstrip(b"=").decode()
    v = VersionsFile()
    v.add("a", "latest", future)
    assert parse_versions_file(v.serialize()) == v
    assert v.resolve("a", "latest") == Pin("a", future)


def test_a_version_that_is_its_own_instance_id_is_not_recorded() -> None:
    v = VersionsFile()
    v.add("a", IID, IID)
    assert len(v) == 0
    assert v.serialize() == HEADER
    parsed = parse_versions_file(f"{HEADER}\na\n\t{IID}\n\t{IID}\n")
    assert parsed == VersionsFile()
    assert parsed.resolve("a", IID) == Pin("a", IID)
