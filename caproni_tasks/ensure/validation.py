"""Validation of package names, instance IDs, refs, tags, versions and subdirs.

The rules and the wording of every error follow the original ``cipd`` client, so a
file accepted (or refused) there is accepted (or refused) here with the same words.
All checks use full matches: Python's ``$`` would also match before a final newline.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Literal

from caproni_tasks.ensure.errors import ValidationError
from caproni_tasks.ensure.quoting import go_quote

__all__ = [
    "InvalidInstanceID",
    "InvalidPackageName",
    "InvalidRef",
    "InvalidSubdir",
    "InvalidTag",
    "InvalidVersion",
    "Pin",
    "VersionKind",
    "go_path_clean",
    "instance_id_from_sha256",
    "is_instance_id",
    "is_valid_package_name",
    "service_url_problem",
    "validate_instance_id",
    "validate_package_name",
    "validate_ref",
    "validate_service_url",
    "validate_subdir",
    "validate_tag",
    "validate_version",
    "version_kind",
]


class InvalidPackageName(ValidationError):
    pass


class InvalidInstanceID(ValidationError):
    pass


class InvalidRef(ValidationError):
    pass


class InvalidTag(ValidationError):
    pass


class InvalidVersion(ValidationError):
    pass


class InvalidSubdir(ValidationError):
    pass


@dataclass(frozen=True, order=True, slots=True)
class Pin:
    """A package pinned to one instance: what a resolved ensure file lists."""

    package: str
    instance_id: str

    def __str__(self) -> str:
        return f"{self.package}:{self.instance_id}"


# --- package names -------------------------------------------------------------------

_PACKAGE_NAME_RE = re.compile(r"([a-z0-9_\-.]+/)*[a-z0-9_\-.]+")
_PACKAGE_NAME_PATTERN_SHOWN = r"[a-z0-9_\-\.]+"
_DOTS_ONLY_RE = re.compile(r"(?:^|/)\.+(?:/|$)")


def is_valid_package_name(name: str) -> bool:
    """`validate_package_name` as a predicate (no message built)."""
    return _PACKAGE_NAME_RE.fullmatch(name) is not None and _DOTS_ONLY_RE.search(name) is None


def validate_package_name(name: str) -> None:
    """A slash-separated path of ``[a-z0-9_\\-.]+`` components, none made only of dots."""
    if not _PACKAGE_NAME_RE.fullmatch(name):
        raise InvalidPackageName(
            f"invalid package name {go_quote(name)}: must be a slash-separated path where "
            f'each component matches "{_PACKAGE_NAME_PATTERN_SHOWN}"'
        )
    if _DOTS_ONLY_RE.search(name):
        raise InvalidPackageName(
            f"invalid package name {go_quote(name)}: dots-only path components are forbidden"
        )


# --- instance IDs --------------------------------------------------------------------

_NOT_HEX_RE = re.compile(r"[^0-9a-f]")
_NOT_BASE64URL_RE = re.compile(r"[^A-Za-z0-9_\-]")
#: Exactly the SHA-256 instance IDs: 44 base64url characters decode to 33 bytes whose
#: last byte (the algorithm, 2) is the last character ("C" = 2) plus the low two bits
#: of the one before (zero for the characters listed).
_SHA256_ID_RE = re.compile(r"[A-Za-z0-9_\-]{42}[AEIMQUYcgkosw048]C")
_LEGACY_SHA1_LEN = 40
_MIN_ENCODED_LEN = 28
#: Hash algorithm byte -> (name, digest length in bytes).
_KNOWN_HASHES: dict[int, tuple[str, int]] = {1: ("SHA1", 20), 2: ("SHA256", 32)}
_SHA256_ALGO = 2


def _utf8_len(text: str) -> int:
    """Lengths are counted in UTF-8 bytes, as the original client counts them."""
    return len(text.encode("utf-8", "surrogatepass"))


def _instance_id_problem(iid: str, *, any_hash: bool) -> str | None:
    """Why ``iid`` is not an instance ID (in the client's words), or None when it is one.

    Checked in the client's order: 40 bytes means hex; otherwise the size, the
    base64url alphabet (Python's decoder would silently skip other characters,
    so the offending byte offset is found here), the decoded length and the hash
    algorithm byte.
    """
    if _SHA256_ID_RE.fullmatch(iid) is not None:  # the common case, without decoding
        return None
    size = _utf8_len(iid)
    if size == _LEGACY_SHA1_LEN:
        bad = _NOT_HEX_RE.search(iid)
        if bad is None:
            return None
        return f"bad lowercase hex string {go_quote(iid)}, wrong char {bad.group(0)}"
    if size < _MIN_ENCODED_LEN:
        return "not a valid size for an encoded digest"
    bad = _NOT_BASE64URL_RE.search(iid)
    if bad is not None:
        offset = _utf8_len(iid[: bad.start()])
        return f"cannot base64 decode: illegal base64 data at input byte {offset}"
    if size % 4 == 1:  # a lone trailing character cannot encode a byte
        return f"cannot base64 decode: illegal base64 data at input byte {size - 1}"
    blob = base64.urlsafe_b64decode(iid + "=" * (-size % 4))
    if len(blob) % 2 != 1:  # the digest (even) plus one algorithm byte
        return "the digest can't be odd"
    algo = blob[-1]
    digest_len = len(blob) - 1
    if algo == 0:
        return "unspecified hash algo (0)"
    known = _KNOWN_HASHES.get(algo)
    if known is None:
        return None if any_hash else f"unsupported unknown hash algorithm #{algo}"
    algo_name, expected = known
    if digest_len != expected:
        return f"wrong digest len {digest_len} for algo {algo_name}"
    return None


def validate_instance_id(iid: str, *, any_hash: bool = False) -> None:
    """A 40-char lowercase hex SHA-1, or base64url(digest + algorithm byte).

    Unknown hash algorithms (byte ≥ 3) are accepted only with ``any_hash``, which is
    how versions are checked when resolving.
    """
    problem = _instance_id_problem(iid, any_hash=any_hash)
    if problem is not None:
        raise InvalidInstanceID(f"not a valid package instance ID {go_quote(iid)}: {problem}")


def is_instance_id(iid: str, *, any_hash: bool = True) -> bool:
    return _instance_id_problem(iid, any_hash=any_hash) is None


def instance_id_from_sha256(digest: bytes) -> str:
    """The instance ID of a package file whose SHA-256 is ``digest``."""
    if len(digest) != _KNOWN_HASHES[_SHA256_ALGO][1]:
        raise ValueError(f"a SHA-256 digest has 32 bytes, got {len(digest)}")
    raw = base64.urlsafe_b64encode(digest + bytes([_SHA256_ALGO]))
    return raw.rstrip(b"=").decode("ascii")


# --- refs, tags, versions ------------------------------------------------------------

_REF_PATTERN = r"^[a-z0-9_./\-]{1,256}$"
_REF_RE = re.compile(r"[a-z0-9_./\-]{1,256}")
_TAG_KEY_PATTERN = r"^[a-z0-9_\-]+$"
_TAG_KEY_RE = re.compile(r"[a-z0-9_\-]+")
_TAG_VALUE_PATTERN = r"^[A-Za-z0-9$()*+,\-./:;<=>@\\_{}~ ]+$"
_TAG_VALUE_RE = re.compile(r"[A-Za-z0-9$()*+,\-./:;<=>@\\_{}~ ]+")
_MAX_TAG_BYTES = 400


def _is_ref(ref: str) -> bool:
    return _REF_RE.fullmatch(ref) is not None and not is_instance_id(ref)


def _is_tag(tag: str) -> bool:
    key, sep, value = tag.partition(":")
    return (
        bool(sep)
        and _TAG_KEY_RE.fullmatch(key) is not None
        and _TAG_VALUE_RE.fullmatch(value) is not None
        and value[0] != " "
        and value[-1] != " "
        and len(tag.encode("utf-8", "surrogatepass")) <= _MAX_TAG_BYTES
    )


def validate_ref(ref: str) -> None:
    """A ref such as ``latest``: lowercase path-ish text that is not an instance ID."""
    if is_instance_id(ref):
        raise InvalidRef(
            f"invalid ref name {go_quote(ref)}: it looks like an instance ID causing ambiguities"
        )
    if not _REF_RE.fullmatch(ref):
        raise InvalidRef(f'invalid ref name {go_quote(ref)}: must match "{_REF_PATTERN}"')


def validate_tag(tag: str) -> None:
    """A ``key:value`` tag; the value may hold ``:`` and inner spaces."""
    quoted = go_quote(tag)
    key, sep, value = tag.partition(":")
    if not sep:
        raise InvalidTag(f"{quoted} doesn't look like a tag (a key:value pair)")
    if len(tag.encode("utf-8", "surrogatepass")) > _MAX_TAG_BYTES:
        raise InvalidTag(f"the tag is too long, should be <={_MAX_TAG_BYTES} chars: {quoted}")
    if not _TAG_KEY_RE.fullmatch(key):
        raise InvalidTag(f'invalid tag key in {quoted}: should match "{_TAG_KEY_PATTERN}"')
    if value.startswith(" ") or value.endswith(" "):
        raise InvalidTag(f"invalid tag value in {quoted}: should not start or end with ' '")
    if not _TAG_VALUE_RE.fullmatch(value):
        raise InvalidTag(f'invalid tag value in {quoted}: should match "{_TAG_VALUE_PATTERN}"')


VersionKind = Literal["instance_id", "ref", "tag"]


def version_kind(version: str) -> VersionKind | None:
    """What ``version`` is (tested as instance ID, ref, then tag), or None if invalid."""
    if is_instance_id(version):
        return "instance_id"
    if _REF_RE.fullmatch(version) is not None:
        return "ref"
    if _is_tag(version):
        return "tag"
    return None


def validate_version(version: str) -> None:
    """An instance ID (any hash), a ref or a tag."""
    if version_kind(version) is None:
        raise InvalidVersion(f"bad version {go_quote(version)}: not an instance ID, a ref or a tag")


# --- subdirs -------------------------------------------------------------------------


def go_path_clean(path: str) -> str:
    """Go's ``path.Clean`` (``posixpath.normpath`` keeps a leading ``//``; Go does not)."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for component in path.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(component)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


def validate_subdir(subdir: str) -> None:
    """A relative, clean, forward-slash path inside the root ("" is the root itself).

    ``..`` alone passes, as in the original; the installer refuses it separately.
    """
    if not subdir:
        return
    quoted = go_quote(subdir)
    if "\\" in subdir:
        raise InvalidSubdir(f'bad subdir {quoted}: backslashes are not allowed (use "/")')
    if ":" in subdir:
        raise InvalidSubdir(f"bad subdir {quoted}: colons are not allowed")
    clean = go_path_clean(subdir)
    if clean != subdir:
        raise InvalidSubdir(f"bad subdir {quoted}: should be simplified to {go_quote(clean)}")
    if subdir.startswith(("./", "../")) or subdir == ".":
        raise InvalidSubdir(f"bad subdir {quoted}: contains disallowed dot-path prefix")
    if subdir.startswith("/"):
        raise InvalidSubdir(f"bad subdir {quoted}: absolute paths are not allowed")


# --- service URLs --------------------------------------------------------------------

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_HEX = frozenset("0123456789abcdefABCDEF")
#: ASCII characters a host may hold as they are (Go's ``shouldEscape`` for hosts);
#: non-ASCII characters are left to the resolver, as in Go.
_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]<>\""
)
_USERINFO_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@"
)


def _escape_problem(text: str, *, host: bool = False) -> str | None:
    """The first bad ``%`` escape (or, in a host, bad character) of ``text``."""
    for index, char in enumerate(text):
        if char == "%":
            escape = text[index : index + 3]
            if len(escape) < 3 or escape[1] not in _HEX or escape[2] not in _HEX:
                return f"invalid URL escape {go_quote(escape)}"
            # In a host only non-ASCII bytes may be escaped, and "%25" (IPv6 zones).
            if host and int(escape[1], 16) < 8 and escape != "%25":
                return f"invalid URL escape {go_quote(escape)}"
        elif host and char.isascii() and char not in _HOST_CHARS:
            return f"invalid character {go_quote(char)} in host name"
    return None


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= c <= "9" for c in port[1:]))


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return "missing ']' in host"
        port = host[end + 1 :]
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    if not _valid_optional_port(port):
        return f"invalid port {go_quote(port)} after host"
    return _escape_problem(host, host=True)


def service_url_problem(url: str) -> str | None:
    """Why ``url`` is not a URL with a scheme (in the words of Go's ``url.Parse``).

    Checked as Go does: the fragment apart; then control characters, the scheme,
    and, for a hierarchical URL, the host (port, characters, escapes), the user
    info and the path's escapes; the query is not checked; then the fragment's
    escapes. An error before the fragment quotes the URL without it.
    """
    main, has_fragment, fragment = url.partition("#")
    prefix = f"parse {go_quote(main)}: "
    if _CONTROL_RE.search(main):
        return prefix + "net/url: invalid control character in URL"
    scheme = _SCHEME_RE.match(main)
    if scheme is None:
        return prefix + "missing protocol scheme"
    rest = main[scheme.end() :].partition("?")[0]
    if rest.startswith("/"):  # otherwise opaque ("mailto:x"): nothing more to check
        path = rest
        if rest.startswith("//"):
            authority, slash, path = rest[2:].partition("/")
            path = slash + path
            userinfo, at, host = authority.rpartition("@")
            problem = _host_problem(host)
            if problem is None and at:
                if any(c not in _USERINFO_CHARS for c in userinfo):
                    problem = "net/url: invalid userinfo"
                else:
                    problem = _escape_problem(userinfo)
            if problem is not None:
                return prefix + problem
        problem = _escape_problem(path)
        if problem is not None:
            return prefix + problem
    if has_fragment:
        problem = _escape_problem(fragment)
        if problem is not None:
            return f"parse {go_quote(url)}: {problem}"
    return None


def validate_service_url(url: str) -> None:
    """A URL with a scheme, such as ``https://chrome-infra-packages.appspot.com``."""
    problem = service_url_problem(url)
    if problem is not None:
        raise ValidationError(problem)
