"""The package file: a zip with ``.cipdpkg/manifest.json``; building, hashing, reading.

Building is deterministic (sorted entries, fixed timestamps and compression, modes
reduced to what a package means: executable, writable, symlink), so one input tree
always gives the same bytes and therefore the same instance ID. Reading validates the
whole archive up front — manifest, every entry name, every symlink target — so an
installer can refuse a malicious or broken package before it writes anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, cast

from caproni_tasks.atomicfile import atomic_output
from caproni_tasks.ensure import ValidationError, instance_id_from_sha256, validate_package_name
from caproni_tasks.jsonfile import JsonShapeError, load_object
from caproni_tasks.packages.limits import PackageLimits, human_size

__all__ = [
    "FORMAT_VERSION",
    "INSTALL_MODES",
    "MANIFEST_NAME",
    "SERVICE_DIR",
    "FileEntry",
    "Manifest",
    "PackageFormatError",
    "PackageLimits",
    "PackageReader",
    "build_package",
    "hasher_for",
    "human_size",
    "instance_id_of_digest",
    "instance_id_of_file",
]

FORMAT_VERSION = "1.1"
SERVICE_DIR = ".cipdpkg"
MANIFEST_NAME = f"{SERVICE_DIR}/manifest.json"
INSTALL_MODES = ("copy", "symlink")

#: 1980-01-01 00:00:00, the earliest time a zip can hold: no build clock leaks in.
_FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_COMPRESSION = zipfile.ZIP_DEFLATED
_COMPRESS_LEVEL = 5
_CHUNK = 1 << 20
#: Symlink chains longer than this are treated as loops (Linux allows 40 hops).
_MAX_LINK_HOPS = 40


ErrorCode = Literal["io_error", "bad_argument_error"]


class PackageFormatError(Exception):
    """A package file that cannot be built or read; the message names file and entry.

    ``error_code`` is ``io_error`` when the file cannot be read (missing, truncated,
    corrupt) and ``bad_argument_error`` when its content breaks the format's rules.
    """

    def __init__(self, message: str, *, error_code: ErrorCode = "bad_argument_error") -> None:
        super().__init__(message)
        self.error_code: ErrorCode = error_code


# --- manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """``.cipdpkg/manifest.json``: what the package is and how it wants to be installed."""

    package_name: str
    install_mode: str | None = None
    version_file: str | None = None
    format_version: str = FORMAT_VERSION

    def to_json(self) -> bytes:
        data: dict[str, str] = {
            "format_version": self.format_version,
            "package_name": self.package_name,
        }
        if self.version_file:
            data["version_file"] = self.version_file
        if self.install_mode:
            data["install_mode"] = self.install_mode
        return (json.dumps(data, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, *, source: str = MANIFEST_NAME) -> Manifest:
        """Parse and check a manifest; ``source`` names it in error messages."""
        try:
            data = load_object(raw, source)
        except JsonShapeError as error:
            raise PackageFormatError(str(error)) from None
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PackageFormatError(
                f"{source}: unsupported format_version {version!r} (expected {FORMAT_VERSION!r})"
            )
        manifest = cls(
            package_name=_optional_str(data, "package_name", source) or "",
            install_mode=_optional_str(data, "install_mode", source) or None,
            version_file=_optional_str(data, "version_file", source) or None,
        )
        manifest.check(source)
        return manifest

    def check(self, source: str = MANIFEST_NAME) -> None:
        """Raise `PackageFormatError` unless every field is valid."""
        if not self.package_name:
            raise PackageFormatError(f"{source}: package_name is missing")
        try:
            validate_package_name(self.package_name)
        except ValidationError as error:
            raise PackageFormatError(f"{source}: {error}") from None
        if self.install_mode is not None and self.install_mode not in INSTALL_MODES:
            raise PackageFormatError(
                f"{source}: unknown install_mode {self.install_mode!r} "
                f"(expected one of {', '.join(INSTALL_MODES)})"
            )
        if self.version_file is not None:
            problem = entry_name_problem(self.version_file)
            if problem is None and _is_service_path(self.version_file):
                problem = f"it is inside the reserved {SERVICE_DIR}/ directory"
            if problem is not None:
                raise PackageFormatError(
                    f"{source}: bad version_file {self.version_file!r}: {problem}"
                )


def _optional_str(data: dict[str, Any], key: str, source: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise PackageFormatError(f"{source}: {key} must be a string, got {type(value).__name__}")


# --- names and hashes ----------------------------------------------------------------


def entry_name_problem(name: str) -> str | None:
    """Why ``name`` is not a clean relative POSIX path inside a package, or None."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "contains a NUL character"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isascii() and name[0].isalpha():
        return "starts with a drive letter"
    for part in name.split("/"):
        if part == "..":
            return "contains a '..' component"
        if part in ("", "."):
            return "not a clean path (empty or '.' component)"
    return None


def _is_service_path(name: str) -> bool:
    return name == SERVICE_DIR or name.startswith(SERVICE_DIR + "/")


def hasher_for(instance_id: str) -> Any:
    """A fresh hashlib object of the algorithm ``instance_id`` was computed with."""
    if len(instance_id) == 40:
        return hashlib.sha1(usedforsecurity=False)
    return hashlib.sha256()


def instance_id_of_digest(hasher: Any) -> str:
    """The instance ID for a finished `hasher_for` object."""
    if hasher.name == "sha1":
        return str(hasher.hexdigest())
    return instance_id_from_sha256(hasher.digest())


def instance_id_of_file(path: Path | str, *, template: str | None = None) -> str:
    """The instance ID of a package file (SHA-256 of its bytes, streamed).

    With ``template`` (an existing instance ID), hash with that ID's algorithm instead,
    so legacy SHA-1 IDs can be checked too.
    """
    hasher = hasher_for(template) if template else hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                hasher.update(chunk)
    except OSError as error:
        raise PackageFormatError(
            f"cannot read package file {path}: {error.strerror or error}", error_code="io_error"
        ) from None
    return instance_id_of_digest(hasher)


# --- building --------------------------------------------------------------------------


@dataclass(frozen=True)
class _SourceFile:
    name: str
    path: Path
    mode: int  # st_mode from lstat


def build_package(
    src_dir: Path | str,
    package_name: str,
    out_path: Path | str,
    *,
    install_mode: str | None = None,
    version_file: str | None = None,
    preserve_writable: bool = False,
) -> str:
    """Zip ``src_dir`` into a package file at ``out_path``; return its instance ID.

    Regular files keep their executable bit; they are writable once installed only
    with ``preserve_writable`` and the owner-write bit set (otherwise read-only, as
    the original's ``pkg-build``). Symlinks are stored as links and must point inside
    the tree. Empty directories are not stored. ``out_path`` appears complete or not
    at all.
    """
    src = Path(src_dir)
    out = Path(out_path)
    manifest = Manifest(package_name, install_mode=install_mode, version_file=version_file)
    manifest.check(source="package manifest")
    if not src.is_dir():
        raise PackageFormatError(f"package source {src} is not a directory", error_code="io_error")
    files = _scan(src, exclude=out.absolute())
    _check_tree(
        {f.name: (os.readlink(f.path) if stat.S_ISLNK(f.mode) else None) for f in files},
        where=f"package source {src}",
    )
    if not out.parent.is_dir():
        raise PackageFormatError(
            f"cannot build package file {out}: directory {out.parent} does not exist "
            "(create it first)",
            error_code="io_error",
        )
    try:
        with atomic_output(out, mode=0o644) as raw, zipfile.ZipFile(raw, "w") as archive:
            for source in files:
                _add_source(archive, source, preserve_writable)
            info = _zip_info(MANIFEST_NAME, 0o100444)
            archive.writestr(info, manifest.to_json(), _COMPRESSION, _COMPRESS_LEVEL)
    except OSError as error:
        raise PackageFormatError(
            f"cannot build package file {out}: {error}", error_code="io_error"
        ) from None
    return instance_id_of_file(out)


def _scan(src: Path, exclude: Path) -> list[_SourceFile]:
    """Every regular file and symlink under ``src``, sorted by name (byte order)."""
    found: list[_SourceFile] = []

    def fail(error: OSError) -> None:
        raise PackageFormatError(
            f"cannot read package source {src}: {error}", error_code="io_error"
        )

    for dirpath, dirnames, filenames in os.walk(src, onerror=fail):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(src).as_posix()
            if _is_service_path(rel):
                raise PackageFormatError(
                    f"package source {src}: {rel!r} uses the reserved {SERVICE_DIR}/ name"
                )
            try:
                mode = path.lstat().st_mode
            except OSError as error:
                fail(error)
            if stat.S_ISDIR(mode):
                continue
            if path.absolute() == exclude:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                raise PackageFormatError(
                    f"package source {src}: {rel!r} is neither a regular file, "
                    "a directory nor a symlink"
                )
            problem = entry_name_problem(rel) or _utf8_problem(rel)
            if problem is None and stat.S_ISLNK(mode):
                problem = _utf8_problem(os.readlink(path), "symlink target")
            if problem is not None:
                raise PackageFormatError(f"package source {src}: file {rel!r}: {problem}")
            found.append(_SourceFile(rel, path, mode))
    found.sort(key=lambda f: f.name.encode("utf-8", "surrogateescape"))
    return found


def _utf8_problem(text: str, what: str = "name") -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"the {what} is not valid UTF-8 (zip entries need UTF-8)"
    return None


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE_TIME)
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = (mode & 0xFFFF) << 16
    info.compress_type = _COMPRESSION
    # Python 3.13 renamed the private _compresslevel slot to compress_level.
    if hasattr(info, "compress_level"):
        info.compress_level = _COMPRESS_LEVEL
    else:
        info._compresslevel = _COMPRESS_LEVEL  # type: ignore[attr-defined]
    return info


def _add_source(archive: zipfile.ZipFile, source: _SourceFile, preserve_writable: bool) -> None:
    if stat.S_ISLNK(source.mode):
        info = _zip_info(source.name, stat.S_IFLNK | 0o777)
        target = os.readlink(source.path)
        archive.writestr(info, target.encode("utf-8"), _COMPRESSION, _COMPRESS_LEVEL)
        return
    mode = stat.S_IFREG | 0o444
    if source.mode & stat.S_IXUSR:
        mode |= 0o111
    if preserve_writable and source.mode & stat.S_IWUSR:
        mode |= 0o222
    info = _zip_info(source.name, mode)
    info.file_size = source.path.stat().st_size  # decides zip64 before streaming
    with open(source.path, "rb") as data, archive.open(info, "w", force_zip64=False) as dest:
        while chunk := data.read(_CHUNK):
            dest.write(chunk)


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One file or symlink of a package, as it will be installed.

    ``symlink_target`` is set for links (whose ``size`` is the target's length);
    ``crc32`` is the zip's checksum of the content.
    """

    name: str
    size: int
    executable: bool = False
    writable: bool = False
    symlink_target: str | None = None
    crc32: int = 0

    @property
    def is_symlink(self) -> bool:
        return self.symlink_target is not None


class PackageReader:
    """Open a package file, validate all of it, then read entries.

    ``with PackageReader(path, expected_package="a/b") as pkg: pkg.manifest,
    pkg.entries, pkg.open(entry)``. Every check that can refuse the package happens in
    the constructor; reading an entry can still fail on a corrupt body (bad CRC), as a
    `PackageFormatError` with ``error_code`` ``io_error``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        expected_package: str | None = None,
        limits: PackageLimits | None = None,
    ) -> None:
        self.path = Path(path)
        self.limits = limits or PackageLimits()
        try:
            self._zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise self._error("no such file", io=True) from None
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as error:
            raise self._error(
                f"not a readable zip archive (truncated or corrupt?): {error}", io=True
            ) from None
        try:
            self.manifest, self.entries = self._validate(expected_package)
        except BaseException:
            self._zip.close()
            raise
        self._infos = {info.filename: info for info in self._zip.infolist()}

    def _error(self, message: str, *, io: bool = False) -> PackageFormatError:
        return PackageFormatError(
            f"package file {self.path}: {message}",
            error_code="io_error" if io else "bad_argument_error",
        )

    def _validate(self, expected_package: str | None) -> tuple[Manifest, list[FileEntry]]:
        seen: set[str] = set()
        links: dict[str, str | None] = {}
        entries: list[FileEntry] = []
        manifest_info: zipfile.ZipInfo | None = None
        for info in self._zip.infolist():
            name = info.filename
            if "\x00" in info.orig_filename:  # zipfile silently cuts names at NUL
                raise self._error(f"entry {info.orig_filename!r}: contains a NUL character")
            problem = entry_name_problem(name.removesuffix("/") if info.is_dir() else name)
            if problem is not None:
                raise self._error(f"entry {name!r}: {problem}")
            if name in seen:
                raise self._error(f"entry {name!r}: duplicate entry")
            seen.add(name)
            if info.flag_bits & 0x1:
                raise self._error(f"entry {name!r}: encrypted entries are not supported")
            if info.is_dir():
                continue
            if name == MANIFEST_NAME:
                manifest_info = info
                continue
            if _is_service_path(name):
                continue  # other service files are never installed
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            target: str | None = None
            if stat.S_ISLNK(mode):
                target = self._read_small(info, limit=4096).decode("utf-8", "replace")
            links[name] = target
            entries.append(
                FileEntry(
                    name=name,
                    size=info.file_size,
                    executable=bool(mode & 0o111),
                    writable=bool(mode & 0o222),
                    symlink_target=target,
                    crc32=info.CRC,
                )
            )
        if manifest_info is None:
            raise self._error(f"no {MANIFEST_NAME} (not a package file?)")
        raw = self._read_small(manifest_info, limit=1 << 20)
        manifest = Manifest.from_json(raw, source=f"package file {self.path}: {MANIFEST_NAME}")
        if expected_package is not None and manifest.package_name != expected_package:
            raise self._error(
                f"it holds package {manifest.package_name!r}, expected {expected_package!r}"
            )
        _check_tree(links, where=f"package file {self.path}")
        self._check_sizes()
        return manifest, entries

    def _check_sizes(self) -> None:
        """Refuse a decompression bomb from the sizes the archive declares."""
        infos = [i for i in self._zip.infolist() if not i.is_dir()]
        for info in infos:
            problem = self.limits.problem(
                info.file_size, info.compress_size, f"entry {info.filename!r}"
            )
            if problem is not None:
                raise self._error(problem)
        declared = sum(i.file_size for i in infos)
        try:
            archive_size = self.path.stat().st_size
        except OSError:
            archive_size = sum(i.compress_size for i in infos)
        problem = self.limits.problem(declared, archive_size, "the package")
        if problem is not None:
            raise self._error(problem)

    def _read_small(self, info: zipfile.ZipInfo, *, limit: int) -> bytes:
        if info.file_size > limit:
            raise self._error(f"entry {info.filename!r}: too large ({info.file_size} bytes)")
        try:
            with self._zip.open(info) as stream:
                return stream.read(limit + 1)
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError) as error:
            raise self._error(f"entry {info.filename!r}: cannot read: {error}", io=True) from None

    def open(self, entry: FileEntry | str) -> IO[bytes]:
        """A binary stream of the entry's content (a symlink's content is its target)."""
        name = entry if isinstance(entry, str) else entry.name
        info = self._infos.get(name)
        if info is None or info.is_dir():
            raise self._error(f"no entry {name!r}")
        try:
            stream = self._zip.open(info)
        except (OSError, zipfile.BadZipFile, zlib.error, ValueError) as error:
            raise self._error(f"entry {name!r}: cannot read: {error}", io=True) from None
        return cast("IO[bytes]", _CheckedStream(stream, self, name, info.file_size))

    def iter_entries(self) -> Iterator[FileEntry]:
        return iter(self.entries)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> PackageReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _CheckedStream(io.RawIOBase):
    """Wraps a zip entry stream so corruption surfaces as `PackageFormatError`."""

    def __init__(self, inner: IO[bytes], reader: PackageReader, name: str, declared: int) -> None:
        super().__init__()
        self._inner = inner
        self._reader = reader
        self._name = name
        self._left = declared  # bytes the headers declared and not yet read

    def readable(self) -> bool:
        return True

    def _fail(self, error: Exception) -> PackageFormatError:
        return self._reader._error(f"entry {self._name!r}: corrupt data: {error}", io=True)

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._inner.read(size)
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError) as error:
            raise self._fail(error) from None
        self._left -= len(data)
        if self._left < 0:
            # Never more than the headers declared (and the limits checked): stop here.
            raise self._fail(ValueError("more data than its header declares"))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


# --- tree checks -------------------------------------------------------------------------


def _check_tree(links: dict[str, str | None], *, where: str) -> None:
    """Refuse trees whose paths or links could place anything outside the root.

    ``links`` maps every entry name to its symlink target (None for files). A path may
    not go through another entry (a file or a link used as a directory), and each link
    target, followed through the tree's own links, must stay inside the root.
    """
    for name in links:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in links:
                kind = "symlink" if links[prefix] is not None else "file"
                raise PackageFormatError(
                    f"{where}: entry {name!r} lies under the {kind} {prefix!r}"
                )
    for name, target in links.items():
        if target is None:
            continue
        problem = _link_problem(name, target, links)
        if problem is not None:
            raise PackageFormatError(f"{where}: symlink {name!r} -> {target!r}: {problem}")


def _link_problem(name: str, target: str, links: dict[str, str | None]) -> str | None:
    if not target:
        return "empty target"
    if "\x00" in target or "\\" in target:
        return "target contains a NUL or a backslash"
    if target.startswith("/") or (
        len(target) >= 2 and target[1] == ":" and target[0].isascii() and target[0].isalpha()
    ):
        return "absolute target (links must be relative and stay inside the package)"
    # Walk the target component by component, following the package's own links,
    # so "a -> b/.." with "b -> .." cannot sneak out of the root.
    pending = target.split("/")
    current: list[str] = name.split("/")[:-1]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                return "target points outside the package"
            current.pop()
            continue
        current.append(part)
        inner = links.get("/".join(current))
        if inner is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            return "too many levels of symbolic links"
        if inner.startswith("/"):
            return "target goes through an absolute symlink"
        current.pop()  # the link's own target is relative to the link's directory
        pending = inner.split("/") + pending
    return None
