"""Reference §7: package names, instance IDs, refs, tags, versions, subdirs; §7.2 IDs."""

from __future__ import annotations

import base64
import hashlib
import string

import pytest

from caproni_tasks.ensure import (
    EnsureFileError,
    InvalidInstanceID,
    InvalidPackageName,
    InvalidRef,
    InvalidSubdir,
    InvalidTag,
    InvalidVersion,
    Pin,
    go_quote,
    instance_id_from_sha256,
    validate_instance_id,
    validate_package_name,
    validate_ref,
    validate_subdir,
    validate_tag,
    validate_version,
    version_kind,
)

SHA256_ID = instance_id_from_sha256(hashlib.sha256(b"package").digest())
SHA1_HEX = hashlib.sha1(b"package").hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- quoting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("\t\n\r", '"\\t\\n\\r"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("\x07\x08\x0b\x0c", '"\\a\\b\\v\\f"'),
        ("héllo ✓", '"héllo ✓"'),
        ("\u00a0\u3000", '"\\u00a0\\u3000"'),
        ("\U0001f600", '"\U0001f600"'),
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_go_quote_matches_go_percent_q(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


# --- §7.1 package names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "infra/tools/cipd", "a-b_c.d/e", "a/.b", "x/..y/z", "0/1", "a.b."]
)
def test_valid_package_names(name: str) -> None:
    validate_package_name(name)


@pytest.mark.parametrize("name", ["", "A", "a//b", "/a", "a/", "a b", "a/B", "ä", "a\n"])
def test_package_name_must_be_slash_separated_components(name: str) -> None:
    with pytest.raises(InvalidPackageName) as err:
        validate_package_name(name)
    assert str(err.value) == (
        f"invalid package name {go_quote(name)}: must be a slash-separated path where each "
        'component matches "[a-z0-9_\\-\\.]+"'
    )


@pytest.mark.parametrize("name", [".", "..", "a/./b", "a/...", "../a"])
def test_package_name_dots_only_components_are_forbidden(name: str) -> None:
    with pytest.raises(InvalidPackageName) as err:
        validate_package_name(name)
    assert str(err.value) == (
        f"invalid package name {go_quote(name)}: dots-only path components are forbidden"
    )


def test_validation_errors_are_value_errors_and_ensure_file_errors() -> None:
    with pytest.raises(ValueError):
        validate_package_name("A")
    with pytest.raises(EnsureFileError):
        validate_version("NOT VALID")


# --- §7.2 instance IDs -----------------------------------------------------------------


def test_instance_id_from_sha256_is_digest_plus_algo_byte_base64url() -> None:
    digest = hashlib.sha256(b"package").digest()
    iid = instance_id_from_sha256(digest)
    assert len(iid) == 44
    assert iid.endswith("C")
    assert base64.urlsafe_b64decode(iid + "=" * (-len(iid) % 4)) == digest + b"\x02"
    assert "=" not in iid


def test_instance_id_from_sha256_needs_32_bytes() -> None:
    with pytest.raises(ValueError):
        instance_id_from_sha256(b"short")


@pytest.mark.parametrize(
    "iid",
    [SHA1_HEX, SHA256_ID, _b64(b"\x00" * 20 + b"\x01")],
)
def test_valid_instance_ids(iid: str) -> None:
    validate_instance_id(iid)


@pytest.mark.parametrize(
    ("iid", "reason"),
    [
        (
            SHA1_HEX.upper(),
            f"bad lowercase hex string {go_quote(SHA1_HEX.upper())}, "
            f"wrong char {SHA1_HEX.upper().lstrip('0123456789')[0]}",
        ),
        ("g" * 40, f'bad lowercase hex string "{"g" * 40}", wrong char g'),
        # 40 UTF-8 bytes (not characters) select the hex form.
        ("a" * 38 + "é", f'bad lowercase hex string "{"a" * 38}é", wrong char é'),
        (SHA256_ID[:-1] + "!", "cannot base64 decode: illegal base64 data at input byte 43"),
        ("a" * 45, "cannot base64 decode: illegal base64 data at input byte 44"),
        ("a" * 30 + "é", "cannot base64 decode: illegal base64 data at input byte 30"),
        ("é" + "a" * 30, "cannot base64 decode: illegal base64 data at input byte 0"),
        ("a=" + "a" * 30, "cannot base64 decode: illegal base64 data at input byte 1"),
        ("abc", "not a valid size for an encoded digest"),
        # The size is checked before the alphabet and the length modulo 4.
        ("a", "not a valid size for an encoded digest"),
        ("!" * 27, "not a valid size for an encoded digest"),
        (_b64(b"\x01" * 22), "the digest can't be odd"),
        (_b64(b"\x01" * 32 + b"\x00"), "unspecified hash algo (0)"),
        (_b64(b"\x01" * 20 + b"\x02"), "wrong digest len 20 for algo SHA256"),
        (_b64(b"\x01" * 32 + b"\x01"), "wrong digest len 32 for algo SHA1"),
        (_b64(b"\x01" * 32 + b"\x07"), "unsupported unknown hash algorithm #7"),
    ],
)
def test_invalid_instance_ids(iid: str, reason: str) -> None:
    with pytest.raises(InvalidInstanceID) as err:
        validate_instance_id(iid)
    assert str(err.value) == f"not a valid package instance ID {go_quote(iid)}: {reason}"


def test_unknown_hash_algorithms_pass_only_where_any_hash_is_allowed() -> None:
    future = _b64(b"\x01" * 48 + b"\x05")
    validate_instance_id(future, any_hash=True)
    with pytest.raises(InvalidInstanceID):
        validate_instance_id(future)
    assert version_kind(future) == "instance_id"


def test_python_base64_leniency_is_not_trusted() -> None:
    # Python's decoder would skip the "." and decode the rest.
    broken = SHA256_ID[:20] + "." + SHA256_ID[21:]
    with pytest.raises(InvalidInstanceID):
        validate_instance_id(broken)


# --- §7.3 refs and tags ----------------------------------------------------------------


@pytest.mark.parametrize("ref", ["latest", "stable", "a/b.c-d_e", "x" * 256])
def test_valid_refs(ref: str) -> None:
    validate_ref(ref)


@pytest.mark.parametrize("ref", ["", "Latest", "a:b", "x" * 257, "a b", "latest\n"])
def test_ref_must_match_pattern(ref: str) -> None:
    with pytest.raises(InvalidRef) as err:
        validate_ref(ref)
    assert str(err.value) == (
        f'invalid ref name {go_quote(ref)}: must match "^[a-z0-9_./\\-]{{1,256}}$"'
    )


def test_ref_that_looks_like_an_instance_id_is_ambiguous() -> None:
    with pytest.raises(InvalidRef) as err:
        validate_ref(SHA1_HEX)
    assert str(err.value) == (
        f'invalid ref name "{SHA1_HEX}": it looks like an instance ID causing ambiguities'
    )


@pytest.mark.parametrize(
    "tag",
    [
        "version:1.2.3",
        "git_revision:abc",
        "k:v:with:colons",
        "k:inner space",
        "k-1:$()*+,-./;<=>@\\_{}~",
    ],
)
def test_valid_tags(tag: str) -> None:
    validate_tag(tag)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("nocolon", '"nocolon" doesn\'t look like a tag (a key:value pair)'),
        (
            "k:" + "v" * 399,
            f'the tag is too long, should be <=400 chars: "k:{"v" * 399}"',
        ),
        ("K:v", 'invalid tag key in "K:v": should match "^[a-z0-9_\\-]+$"'),
        (":v", 'invalid tag key in ":v": should match "^[a-z0-9_\\-]+$"'),
        ("k: v", "invalid tag value in \"k: v\": should not start or end with ' '"),
        ("k:v ", "invalid tag value in \"k:v \": should not start or end with ' '"),
        (
            "k:v#",
            'invalid tag value in "k:v#": should match "^[A-Za-z0-9$()*+,\\-./:;<=>@\\\\_{}~ ]+$"',
        ),
        (
            "k:",
            'invalid tag value in "k:": should match "^[A-Za-z0-9$()*+,\\-./:;<=>@\\\\_{}~ ]+$"',
        ),
    ],
)
def test_tag_errors_in_order(tag: str, message: str) -> None:
    with pytest.raises(InvalidTag) as err:
        validate_tag(tag)
    assert str(err.value) == message


def test_tag_length_counts_bytes() -> None:
    validate_tag("k:" + "v" * 398)
    with pytest.raises(InvalidTag, match="too long"):
        validate_tag("k:" + "é" * 200)  # 402 bytes, 202 characters


# --- §7.4 versions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "kind"),
    [(SHA256_ID, "instance_id"), (SHA1_HEX, "instance_id"), ("latest", "ref"), ("v:1", "tag")],
)
def test_version_is_instance_id_ref_or_tag_in_that_order(version: str, kind: str) -> None:
    validate_version(version)
    assert version_kind(version) == kind


@pytest.mark.parametrize("version", ["", "LATEST", "a b", "x" * 501, "k :v"])
def test_bad_version(version: str) -> None:
    with pytest.raises(InvalidVersion) as err:
        validate_version(version)
    assert str(err.value) == (
        f"bad version {go_quote(version)}: not an instance ID, a ref or a tag"
    )


# --- §7.5 subdirs ----------------------------------------------------------------------


@pytest.mark.parametrize("subdir", ["", "a", "a/b", "with space", "..", "a..b", ".hidden"])
def test_valid_subdirs(subdir: str) -> None:
    validate_subdir(subdir)


@pytest.mark.parametrize(
    ("subdir", "reason"),
    [
        ("a\\b", 'backslashes are not allowed (use "/")'),
        ("c:/x", "colons are not allowed"),
        ("a\\:b", 'backslashes are not allowed (use "/")'),
        ("a//b", 'should be simplified to "a/b"'),
        ("a/", 'should be simplified to "a"'),
        ("./a", 'should be simplified to "a"'),
        ("a/../b", 'should be simplified to "b"'),
        ("//a", 'should be simplified to "/a"'),
        ("../a", "contains disallowed dot-path prefix"),
        (".", "contains disallowed dot-path prefix"),
        ("/a", "absolute paths are not allowed"),
    ],
)
def test_subdir_rules_in_order(subdir: str, reason: str) -> None:
    with pytest.raises(InvalidSubdir) as err:
        validate_subdir(subdir)
    assert str(err.value) == f"bad subdir {go_quote(subdir)}: {reason}"


def test_pin_is_a_frozen_value() -> None:
    pin = Pin("a/b", SHA256_ID)
    assert pin == Pin("a/b", SHA256_ID)
    assert str(pin) == f"a/b:{SHA256_ID}"
    with pytest.raises(AttributeError):
        pin.package = "x"  # type: ignore[misc]


def test_the_sha256_shortcut_agrees_with_decoding() -> None:
    from caproni_tasks.ensure.validation import _SHA256_ID_RE

    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    for penultimate in alphabet:
        for last in alphabet:
            iid = SHA256_ID[:42] + penultimate + last
            blob = base64.urlsafe_b64decode(iid + "=" * (-len(iid) % 4))
            assert (_SHA256_ID_RE.fullmatch(iid) is not None) == (blob[-1] == 2), iid
    for seed in range(200):
        iid = instance_id_from_sha256(hashlib.sha256(bytes([seed])).digest())
        assert _SHA256_ID_RE.fullmatch(iid) is not None
