"""What a root holds: one small record per installed package, written last.

Layout under ``<root>/.cipd/`` (documented for users in docs/install.md)::

    lock                          inter-process lock serialising runs on this root
    tmp/<txn>/…                   staging directories; anything here is garbage after a crash
    pkgs/<key>/state.json         the commit record: subdir, package, instance ID, txn, manifest
    pkgs/<key>/files-<txn>.json   the file manifest of that install (path, size, mtime, mode, hash)
    pkgs/<key>/pending.json       written before files move; gone once the change is complete

``<key>`` names a (subdir, package) *slot*. Writing ``state.json`` (an atomic rename) is
the commit point. Every path that any manifest or ``pending.json`` of a slot lists is
*owned* by that slot: a later run may overwrite or delete it. A slot whose
``pending.json`` carries a txn other than the committed one was interrupted before its
commit and is reinstalled; one whose txn matches was interrupted while removing old
files and only needs that cleanup finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caproni_tasks.atomicfile import fsync_directory, write_atomic
from caproni_tasks.jsonfile import JsonShapeError, load_object

__all__ = [
    "STATE_DIR",
    "InstalledFile",
    "Pending",
    "RootState",
    "Slot",
    "SlotRecord",
    "StateError",
    "new_txn",
    "slot_key",
]

STATE_DIR = ".cipd"
FORMAT = 1
_MANIFEST_RE = re.compile(r"^files-([0-9a-f]{8,64})\.json$")


class StateError(Exception):
    """The state directory holds something this version cannot read."""

    error_code = "io_error"


def new_txn() -> str:
    return secrets.token_hex(8)


def slot_key(subdir: str, package: str) -> str:
    """A file-name-safe, stable name for a (subdir, package) slot."""
    digest = hashlib.sha256(f"{subdir}\n{package}".encode()).hexdigest()[:16]
    tail = package.rsplit("/", 1)[-1][:40]
    return f"{tail}-{digest}"


@dataclass(frozen=True)
class InstalledFile:
    """One installed path, relative to the root in POSIX form.

    ``mode`` is the permission bits it was created with; ``sha256`` is the hex digest of
    its content. A symlink has ``symlink`` set, ``size`` 0, ``mode`` 0 and no hash.
    """

    path: str
    size: int
    mtime_ns: int
    mode: int
    sha256: str = ""
    symlink: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path}
        if self.symlink is not None:
            data["symlink"] = self.symlink
        else:
            data.update(size=self.size, mtime_ns=self.mtime_ns, mode=self.mode, sha256=self.sha256)
        return data

    @classmethod
    def from_json(cls, data: Any) -> InstalledFile:
        """Raises `TypeError` or `KeyError` for an entry of the wrong shape."""
        if not isinstance(data, dict):
            raise TypeError("an entry is not an object")
        path = data["path"]
        if not isinstance(path, str):
            raise TypeError("'path' is not a string")
        if "symlink" in data:
            target = data["symlink"]
            if not isinstance(target, str):
                raise TypeError(f"{path}: 'symlink' is not a string")
            return cls(path, 0, 0, 0, "", target)
        numbers = [data["size"], data["mtime_ns"], data["mode"]]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            raise TypeError(f"{path}: size, mtime_ns and mode must be integers")
        if not isinstance(data["sha256"], str):
            raise TypeError(f"{path}: 'sha256' is not a string")
        return cls(path, numbers[0], numbers[1], numbers[2], data["sha256"])


@dataclass(frozen=True)
class SlotRecord:
    """The committed content of a slot (``state.json``)."""

    subdir: str
    package: str
    instance_id: str
    txn: str

    @property
    def manifest_name(self) -> str:
        return f"files-{self.txn}.json"


@dataclass(frozen=True)
class Pending:
    """A change under way: the txn it will commit and the paths it may write."""

    txn: str
    instance_id: str
    paths: tuple[str, ...]


@dataclass
class Slot:
    """The state directory of one (subdir, package) and lazy access to its manifests."""

    directory: Path
    record: SlotRecord | None
    pending: Pending | None
    _files: list[InstalledFile] | None = field(default=None, repr=False)
    _pending_identity: tuple[str, str] | None = field(default=None, repr=False)
    #: Deployed by the cipd client (``description.json`` + ``_current``): read only;
    #: a change to its package takes it over (see `execution`).
    foreign: bool = False

    @property
    def key(self) -> str:
        return self.directory.name

    @property
    def identity(self) -> tuple[str, str] | None:
        """(subdir, package) from the committed record or, failing that, from pending.json."""
        if self.record is not None:
            return (self.record.subdir, self.record.package)
        return self._pending_identity

    @property
    def is_clean(self) -> bool:
        return self.record is not None and self.pending is None

    @property
    def is_committed_pending(self) -> bool:
        """Interrupted after the commit, while removing the previous version's files."""
        return (
            self.record is not None
            and self.pending is not None
            and self.pending.txn == self.record.txn
        )

    def files(self) -> list[InstalledFile]:
        """The committed manifest (read on first use only)."""
        if self._files is None:
            if self.foreign and self.record is not None:
                self._files = _cipd_deployed_files(self.directory, self.record)
            elif self.record is None:
                self._files = []
            else:
                self._files = _read_manifest(self.directory / self.record.manifest_name)
        return self._files

    def owned_paths(self) -> set[str]:
        """Every path this slot may have written: all manifests on disk plus pending paths."""
        owned = {f.path for f in self.files()}
        current = self.record.manifest_name if self.record else None
        for name in _listdir(self.directory):
            if _MANIFEST_RE.match(name) and name != current:
                try:
                    owned.update(f.path for f in _read_manifest(self.directory / name))
                except StateError:
                    continue  # a half-written generation never got committed
        if self.pending is not None:
            owned.update(self.pending.paths)
        return owned

    # --- writers (called with the root lock held) ---------------------------------

    def write_pending(self, pending: Pending, subdir: str, package: str) -> None:
        """Record a change about to start; paths of an earlier unfinished one stay owned."""
        if self.pending is not None:
            extra = [p for p in self.pending.paths if p not in set(pending.paths)]
            pending = Pending(pending.txn, pending.instance_id, (*pending.paths, *extra))
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "subdir": subdir,
            "package": package,
            "txn": pending.txn,
            "instance_id": pending.instance_id,
            "paths": list(pending.paths),
        }
        write_atomic(self.directory / "pending.json", json.dumps(data))
        self.pending = pending
        self._pending_identity = (subdir, package)

    def commit(self, record: SlotRecord, files: list[InstalledFile]) -> None:
        """Write the manifest, then ``state.json``: after this the install is done."""
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "files": [f.to_json() for f in files]}
        write_atomic(self.directory / record.manifest_name, json.dumps(manifest))
        state = {
            "format": FORMAT,
            "subdir": record.subdir,
            "package": record.package,
            "instance_id": record.instance_id,
            "txn": record.txn,
        }
        write_atomic(self.directory / "state.json", json.dumps(state))
        self.record = record
        self._files = list(files)

    def begin_removal(
        self, txn: str, instance_id: str, paths: tuple[str, ...], subdir: str, package: str
    ) -> None:
        """The removal's commit point: ``pending.json`` (every path the slot owns), then
        ``state.json`` is deleted. Until the slot is gone, a run sees an unfinished change."""
        self.write_pending(Pending(txn, instance_id, paths), subdir, package)
        state = self.directory / "state.json"
        if state.exists():
            state.unlink()
            fsync_directory(self.directory)
        self._files = []
        self.record = None

    def forget_history(self) -> None:
        """Drop old manifests and pending.json once their files are dealt with."""
        current = self.record.manifest_name if self.record else None
        for name in _listdir(self.directory):
            if name != current and (_MANIFEST_RE.match(name) or name.endswith(".tmp")):
                (self.directory / name).unlink(missing_ok=True)
        (self.directory / "pending.json").unlink(missing_ok=True)
        self.pending = None

    def delete(self) -> None:
        """Forget the slot: ``state.json`` first (the removal's commit), then the rest."""
        (self.directory / "state.json").unlink(missing_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.record = None
        self.pending = None
        self._files = []


@dataclass
class RootState:
    """Every slot of a root, read from ``<root>/.cipd/pkgs`` (small files only)."""

    root: Path
    slots: dict[str, Slot]

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def tmp_dir(self) -> Path:
        return self.state_dir / "tmp"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "lock"

    @classmethod
    def load(cls, root: Path) -> RootState:
        pkgs = root / STATE_DIR / "pkgs"
        slots: dict[str, Slot] = {}
        for name in _listdir(pkgs):
            if name.startswith("."):
                continue
            slots[name] = _load_slot(pkgs / name)
        return cls(root, slots)

    def slot_for(self, subdir: str, package: str) -> Slot:
        key = slot_key(subdir, package)
        slot = self.slots.get(key)
        if slot is None:
            slot = Slot(self.state_dir / "pkgs" / key, None, None)
            self.slots[key] = slot
        return slot

    def by_identity(self) -> dict[tuple[str, str], Slot]:
        """Slots by (subdir, package); ours win over one the cipd client deployed."""
        found: dict[tuple[str, str], Slot] = {}
        for slot in sorted(self.slots.values(), key=lambda s: not s.foreign):
            if (ident := slot.identity) is not None:
                found[ident] = slot
        return found

    def foreign_for(self, subdir: str, package: str) -> Slot | None:
        """The cipd client's deployment of this package, if the root has one."""
        for slot in self.slots.values():
            if slot.foreign and slot.identity == (subdir, package):
                return slot
        return None

    def has_leftovers(self) -> bool:
        """Staging directories, or slots with neither a record nor a pending change."""
        if any(True for _ in _listdir(self.tmp_dir)):
            return True
        return any(s.identity is None for s in self.slots.values())

    def installed(self) -> Iterator[SlotRecord]:
        for slot in self.slots.values():
            if slot.record is not None:
                yield slot.record


def _load_slot(directory: Path) -> Slot:
    record = None
    state = _read_json(directory / "state.json")
    data = _read_json(directory / "pending.json")
    if state is None and data is None and (directory / CIPD_DESCRIPTION).exists():
        return _load_cipd_slot(directory)
    if state is not None:
        where = directory / "state.json"
        record = SlotRecord(
            _text(state, "subdir", where),
            _text(state, "package", where),
            _text(state, "instance_id", where),
            _text(state, "txn", where),
        )
    pending = None
    identity = None
    if data is not None:
        where = directory / "pending.json"
        paths = data.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise _corrupt(where, "'paths' is not a list of strings")
        txn, instance_id = _text(data, "txn", where), _text(data, "instance_id", where)
        pending = Pending(txn, instance_id, tuple(paths))
        identity = (_text(data, "subdir", where), _text(data, "package", where))
    return Slot(directory, record, pending, _pending_identity=identity)


# --- roots deployed by the cipd client ---------------------------------------------------

#: What the cipd client keeps per package in ``.cipd/pkgs/<n>/`` (its deployer's layout).
CIPD_DESCRIPTION = "description.json"
_CIPD_CURRENT = "_current"
_CIPD_CURRENT_TXT = "_current.txt"
#: The ``txn`` of a record read from a cipd deployment (it has no transactions).
CIPD_TXN = "cipd"


def _load_cipd_slot(directory: Path) -> Slot:
    """A slot the cipd client deployed: subdir and package from ``description.json``,
    the instance from ``_current`` (a symlink; ``_current.txt`` on Windows)."""
    where = directory / CIPD_DESCRIPTION
    try:
        description = load_object(where.read_bytes(), f"cipd package description {where}")
    except (OSError, JsonShapeError) as exc:
        raise StateError(f"{exc}; run the cipd client on this root, or delete it") from None
    subdir = description.get("subdir") or ""
    package = description.get("package_name")
    if not isinstance(subdir, str) or not isinstance(package, str) or not package:
        raise _corrupt(where, "'package_name' or 'subdir' is missing or not a string")
    instance_id = _cipd_current(directory)
    if instance_id is None:
        # Deployed halfway by the cipd client: nothing of it is live; the paths its
        # manifests list are still claimed so a takeover can clean them.
        return Slot(
            directory,
            None,
            Pending(CIPD_TXN, "", ()),
            _pending_identity=(subdir, package),
            foreign=True,
        )
    record = SlotRecord(subdir, package, instance_id, CIPD_TXN)
    return Slot(directory, record, None, foreign=True)


def _cipd_current(directory: Path) -> str | None:
    try:
        target = os.readlink(directory / _CIPD_CURRENT)
    except OSError:
        try:
            target = (directory / _CIPD_CURRENT_TXT).read_text(encoding="utf-8")
        except OSError:
            return None
    target = target.strip().rstrip("/").rsplit("/", 1)[-1]
    return target or None


def _cipd_deployed_files(directory: Path, record: SlotRecord) -> list[InstalledFile]:
    """Root-relative paths from the deployed manifest (``<iid>/.cipdpkg/manifest.json``).

    In symlink mode each root path is a link to ``.cipd/pkgs/<n>/_current/<name>``; in
    copy mode it is the file itself (size and mode known, no hash: a content check
    reinstalls the package in our layout).
    """
    where = directory / record.instance_id / ".cipdpkg" / "manifest.json"
    try:
        manifest = load_object(where.read_bytes(), f"cipd deployed manifest {where}")
    except (OSError, JsonShapeError) as exc:
        raise StateError(f"{exc}; run the cipd client on this root, or delete it") from None
    entries = manifest.get("files") or []
    if not isinstance(entries, list):
        raise _corrupt(where, "'files' is not a list")
    symlink_mode = manifest.get("actual_install_mode", manifest.get("install_mode")) != "copy"
    prefix = f"{record.subdir}/" if record.subdir else ""
    files: list[InstalledFile] = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or name.startswith(".cipdpkg/"):
            continue
        path = prefix + name
        if symlink_mode:
            depth = path.count("/")
            target = "../" * depth + f"{STATE_DIR}/pkgs/{directory.name}/{_CIPD_CURRENT}/{name}"
            files.append(InstalledFile(path, 0, 0, 0, "", target))
        elif isinstance(entry.get("symlink"), str):
            files.append(InstalledFile(path, 0, 0, 0, "", entry["symlink"]))
        else:
            size = entry.get("size")
            mode = 0o555 if entry.get("executable") else 0o444
            files.append(InstalledFile(path, size if isinstance(size, int) else -1, 0, mode))
    return files


def _corrupt(path: Path, why: str) -> StateError:
    return StateError(f"corrupt state file {path}: {why}; delete the root to start over")


def _text(data: dict[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _corrupt(path, f"{key!r} is missing or not a string")
    return value


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read state file {path}: {exc.strerror or exc}") from None
    try:
        data = load_object(raw, f"corrupt state file {path}")
    except JsonShapeError as exc:
        raise StateError(f"{exc}; delete the root to start over") from None
    if data.get("format") != FORMAT:
        raise StateError(
            f"state file {path} has an unknown format (written by a newer caproni-tasks?)"
        )
    return data


def _read_manifest(path: Path) -> list[InstalledFile]:
    data = _read_json(path)
    if data is None:
        raise StateError(f"missing manifest {path}; delete the root to start over")
    items = data.get("files")
    if not isinstance(items, list):
        raise _corrupt(path, "'files' is not a list")
    try:
        return [InstalledFile.from_json(item) for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise _corrupt(path, f"bad file entry ({exc})") from None


def _listdir(path: Path) -> Iterable[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return ()
