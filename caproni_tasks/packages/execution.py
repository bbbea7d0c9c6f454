"""Carry out a plan on a root: fetch, check, stage, commit, clean up.

The steps, and what a SIGKILL or a power cut at any point leaves (see
`caproni_tasks.packages.state` for the records):

1. **fetch** every instance needed once, in parallel, through the shared cache.
2. **check** everything before writing: each package file is validated whole (names,
   links, manifest, size limits), the subdirs stay inside the root, no two packages
   claim one path, and no path would overwrite a file that caproni did not install.
3. **stage** each package into ``<root>/.cipd/tmp/<txn>`` (in parallel); with
   ``durable_data``, flush the filesystem once so the staged files' contents are on
   disk before anything points at them.
4. **commit** per package: write ``pending.json`` (the paths it may write), rename
   staged files into place and fsync the directories they entered, write its manifest
   and ``state.json`` (the commit point, fsynced), then delete the files the previous
   version had and the new one does not, prune empty directories, drop ``pending.json``.
5. **remove** a package no longer wanted: ``pending.json`` first, then ``state.json`` is
   deleted (the removal's commit point), then its files. An interrupted removal is a
   slot with only ``pending.json``: finished if the package stays unwanted, reinstalled
   from scratch if it is wanted again.

Deletion never follows a symlink in a parent (`caproni_tasks.packages.removal`).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.atomicfile import flush_filesystem, fsync_directory
from caproni_tasks.packages.planning import (
    FULL_KINDS,
    PAST_TENSE,
    Action,
    ActionKind,
    InstallError,
    InstallResult,
    Plan,
    parents,
    root_path,
)
from caproni_tasks.packages.removal import remove_dir_beneath, remove_file_beneath
from caproni_tasks.packages.state import (
    STATE_DIR,
    InstalledFile,
    Pending,
    RootState,
    Slot,
    SlotRecord,
    new_txn,
)

if TYPE_CHECKING:
    from caproni_tasks.packages.format import FileEntry, PackageReader
    from caproni_tasks.packages.installer import Installer

__all__ = ["Execution", "clean_leftovers"]

#: A package gets one extraction thread per this many bytes (up to --jobs and the cores).
_BYTES_PER_WORKER = 16 << 20


def clean_leftovers(state: RootState) -> None:
    """Staging dirs of killed runs, and slot dirs that never got a record or a pending file."""
    if state.tmp_dir.exists():
        for entry in os.scandir(state.tmp_dir):
            _force_remove(Path(entry.path))
    for key, slot in list(state.slots.items()):
        if slot.identity is None:
            shutil.rmtree(slot.directory, ignore_errors=True)
            del state.slots[key]


def _force_remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- execution -----------------------------------------------------------------------------


@dataclass
class _Staged:
    action: Action
    txn: str
    staging: Path
    files: list[InstalledFile]  # paths relative to the root


class Execution:
    """One execution of a plan (the root lock is held by the caller)."""

    def __init__(
        self,
        installer: Installer,
        state: RootState,
        plan: Plan,
        result: InstallResult,
        checkpoint: Callable[[str], None],
    ) -> None:
        self.checkpoint = checkpoint
        self.inst = installer
        self.root = installer.root
        self.state = state
        self.plan = plan
        self.result = result
        self.readers: dict[tuple[str, str], PackageReader] = {}
        self.paths: dict[tuple[str, str], Path] = {}
        self._entered: set[Path] = set()  # directories that renames added entries to

    def execute(self) -> None:
        fetching = [
            a for a in self.plan.actions if a.kind in FULL_KINDS or a.kind is ActionKind.REPAIR
        ]
        try:
            self._fetch_all(fetching)
            new_files = self._check_all(fetching)
            staged = self._stage_all(fetching, new_files)
            if staged and self.inst.durable_data:
                flush_filesystem(self.state.tmp_dir)
            protected = self._protected(staged)
            for item in staged:
                self._commit(item, protected)
            for action in self.plan.actions:
                if action.kind is ActionKind.FINISH:
                    slot = self.state.slot_for(action.subdir, action.package)
                    self._cleanup(slot, protected)
                    self.inst.say(
                        f"finished {action.package}: removed leftovers of an interrupted run"
                    )
                elif action.kind is ActionKind.REMOVE:
                    self._remove(action, protected)
        finally:
            for reader in self.readers.values():
                reader.close()
            if self.state.tmp_dir.exists():
                for entry in os.scandir(self.state.tmp_dir):
                    _force_remove(Path(entry.path))

    # fetch --------------------------------------------------------------------------

    def _fetch_all(self, actions: Sequence[Action]) -> None:
        wanted: dict[tuple[str, str], Action] = {}
        for a in actions:
            wanted.setdefault((a.package, a.instance_id), a)
        if not wanted:
            return
        with ThreadPoolExecutor(max_workers=self.inst.jobs) as pool:
            futures = {key: pool.submit(self._fetch_one, *key) for key in wanted}
            errors = []
            for key, future in futures.items():
                try:
                    self.paths[key] = future.result()
                except InstallError as exc:
                    if not exc.details:
                        action = wanted[key]
                        exc.details = {"package": action.package, "version": action.instance_id}
                        if action.subdir:
                            exc.details["subdir"] = action.subdir
                    errors.append(exc)
        if errors:
            raise errors[0]

    def _fetch_one(self, package: str, instance_id: str, *, force: bool = False) -> Path:
        from caproni_tasks.packages.repository import RepositoryError

        reporter = self.inst.reporter
        transfer = None
        paused = False

        def progress(n: int) -> None:
            nonlocal paused
            if transfer is not None:
                transfer.advance(n)
            if not paused:
                paused = True
                self.checkpoint("download")

        def started() -> None:
            nonlocal transfer
            if reporter is not None:
                subject = f"{package} {instance_id[:12]}…"
                transfer = reporter.transfer(
                    "fetching", subject, self._known_size(package, instance_id)
                )

        try:
            if force:
                self.inst.cache.discard(instance_id)
            path = self.inst.cache.get(
                self.inst.repository(), package, instance_id, progress, on_download=started
            )
        except RepositoryError as exc:
            raise InstallError(
                f"failed to fetch {package} {instance_id}: {exc}", exc.error_code
            ) from None
        except OSError as exc:
            raise InstallError(
                f"failed to fetch {package} {instance_id}: {exc}", "io_error"
            ) from None
        if transfer is not None:
            transfer.done()
        return path

    def _known_size(self, package: str, instance_id: str) -> int | None:
        """The download's size for a progress bar, if the repository knows it cheaply
        (otherwise the bar counts bytes without a total)."""
        size = self.inst.repository().known_size(package, instance_id)
        return size if size is not None and size > 0 else None

    # check --------------------------------------------------------------------------

    def _open(self, action: Action) -> PackageReader:
        from caproni_tasks.packages.format import PackageFormatError, PackageReader

        key = (action.package, action.instance_id)
        reader = self.readers.get(key)
        if reader is None:
            try:
                reader = PackageReader(
                    self.paths[key], expected_package=action.package, limits=self.inst.limits
                )
            except PackageFormatError as exc:
                raise InstallError(
                    f"refusing to install {action.package} {action.instance_id}: {exc}",
                    exc.error_code,
                ) from None
            self.readers[key] = reader
        return reader

    def _package_files(self, action: Action) -> dict[str, FileEntry | None]:
        """Root-relative path -> entry (None for the version file) of a full install."""
        reader = self._open(action)
        files: dict[str, FileEntry | None] = {
            root_path(action.subdir, e.name): e for e in reader.entries
        }
        version_file = reader.manifest.version_file
        if version_file:
            path = root_path(action.subdir, version_file)
            if path in files:
                raise InstallError(
                    f"refusing to install {action.package}: its version_file {version_file!r} "
                    "is also one of its files",
                    "bad_argument_error",
                )
            files[path] = None
        for path in files:
            if path.split("/", 1)[0] == STATE_DIR:
                raise InstallError(
                    f"refusing to install {action.package}: {path!r} would overwrite the "
                    f"installer's state in {STATE_DIR}/",
                    "bad_argument_error",
                )
        return files

    def _check_all(
        self, actions: Sequence[Action]
    ) -> dict[tuple[str, str], dict[str, FileEntry | None]]:
        new_files: dict[tuple[str, str], dict[str, FileEntry | None]] = {}
        for a in actions:
            self._open(a)
            if a.kind in FULL_KINDS:
                new_files[(a.subdir, a.package)] = self._package_files(a)
        claims: dict[str, tuple[str, str]] = {}
        by_identity = self.state.by_identity()
        for d in self.plan.desired:
            paths: Iterable[str]
            if d.identity in new_files:
                paths = new_files[d.identity]
            else:
                slot = by_identity.get(d.identity)
                paths = [f.path for f in slot.files()] if slot is not None else []
            for p in paths:
                other = claims.setdefault(p, d.identity)
                if other != d.identity:
                    raise InstallError(_clash(p, other, d.identity), "bad_argument_error")
        for p, owner in claims.items():
            for parent in parents(p):
                holder = claims.get(parent)
                if holder is not None:
                    raise InstallError(
                        _clash(p, owner, holder, detail=f" ({parent!r} is a file of {holder[1]})"),
                        "bad_argument_error",
                    )
        owned: set[str] = set()
        for slot in self.state.slots.values():
            owned.update(slot.owned_paths())
        conflicts: list[str] = []
        seen_dirs: dict[str, str] = {}
        writes: list[tuple[str, Iterable[str]]] = [
            (identity[1], files) for identity, files in new_files.items()
        ]
        writes += [(a.package, a.paths) for a in actions if a.kind is ActionKind.REPAIR]
        for package, paths in writes:
            for p in paths:
                problem = self._unmanaged(p, owned, seen_dirs)
                if problem is not None:
                    conflicts.append(f"{p} ({problem}; wanted by {package})")
        if conflicts:
            shown = "\n  ".join(conflicts[:20])
            more = f"\n  … and {len(conflicts) - 20} more" if len(conflicts) > 20 else ""
            raise InstallError(
                f"refusing to overwrite files in {self.root} that caproni did not install:\n"
                f"  {shown}{more}\nmove or delete them, then run again",
                "bad_argument_error",
            )
        return new_files

    def _unmanaged(self, p: str, owned: set[str], seen: dict[str, str]) -> str | None:
        """Why writing root-relative ``p`` would clobber something that is not ours."""
        for parent in parents(p):
            kind = seen.get(parent)
            if kind is None:
                kind = _parent_kind(self.root / parent, parent in owned)
                seen[parent] = kind
            if kind == "foreign":
                return f"{parent} exists and is not a directory"
            if kind in ("absent", "ours"):
                # Nothing is below a missing parent, and an old version's file or link
                # there is replaced by a directory: what the link points at is not p.
                return None
        try:
            st = os.lstat(self.root / p)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(st.st_mode):
            # Replaced by a file only if everything in it is ours (whoever owned the path).
            for dirpath, dirs, names in os.walk(self.root / p):
                links = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
                for name in [*names, *links]:
                    rel = Path(dirpath, name).relative_to(self.root).as_posix()
                    if rel not in owned:
                        return f"a directory holding {rel}"
            return None
        return None if p in owned else "exists"

    # stage --------------------------------------------------------------------------

    def _stage_all(
        self,
        actions: Sequence[Action],
        new_files: Mapping[tuple[str, str], dict[str, FileEntry | None]],
    ) -> list[_Staged]:
        self.state.tmp_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=min(self.inst.jobs, max(1, len(actions)))) as pool:
            futures = [
                pool.submit(self._stage_with_retry, a, new_files.get((a.subdir, a.package)))
                for a in actions
            ]
            return [f.result() for f in futures]

    def _stage_with_retry(
        self, action: Action, files: dict[str, FileEntry | None] | None
    ) -> _Staged:
        from caproni_tasks.packages.format import PackageFormatError

        try:
            return self._stage(action, files)
        except PackageFormatError as exc:
            if exc.error_code != "io_error":
                raise InstallError(
                    f"refusing to install {action.package}: {exc}", exc.error_code
                ) from None
            first = exc
        # A cache entry that passed its stat check but fails a CRC: fetch it once more.
        key = (action.package, action.instance_id)
        self.inst.say(
            f"cached {action.package} {action.instance_id} is corrupt ({first}); fetching it again"
        )
        stale = self.readers.pop(key, None)
        if stale is not None:
            stale.close()
        self.paths[key] = self._fetch_one(*key, force=True)
        try:
            return self._stage(action, files)
        except PackageFormatError as exc:
            raise InstallError(f"cannot install {action.package}: {exc}", exc.error_code) from None

    def _stage(self, action: Action, files: dict[str, FileEntry | None] | None) -> _Staged:
        from caproni_tasks.packages.extract import stage_entries, stage_version_file

        reader = self._open(action)
        txn = new_txn()
        staging = self.state.tmp_dir / txn
        prefix = f"{action.subdir}/" if action.subdir else ""
        if files is None:  # REPAIR: only the broken paths
            wanted = set(action.paths)
            entries = [e for e in reader.entries if root_path(action.subdir, e.name) in wanted]
            version_file = reader.manifest.version_file
            want_version = (
                bool(version_file) and root_path(action.subdir, version_file or "") in wanted
            )
        else:
            entries = [e for e in files.values() if e is not None]
            version_file = reader.manifest.version_file
            want_version = bool(version_file)
        total = sum(e.size for e in entries if e.symlink_target is None)
        transfer = None
        if self.inst.reporter is not None and total:
            transfer = self.inst.reporter.transfer("extracting", action.package, total, log=False)
        # Big packages extract on several threads: zlib, hashing and file writes release
        # the GIL, and the kernel's share of writing many files spreads over the cores
        # (measured: ~25% faster on 2 cores for 100 MB / 2,000 files).
        workers = max(1, min(self.inst.jobs, os.cpu_count() or 1, total // _BYTES_PER_WORKER))
        midway = max(1, len(entries) // (2 * workers))

        def after_each(count: int) -> None:
            if count == midway:
                self.checkpoint("extract")

        progress = transfer.advance if transfer is not None else None

        def stage(chunk: list[FileEntry]) -> list[InstalledFile]:
            return stage_entries(reader, chunk, staging, progress=progress, after_each=after_each)

        if workers == 1:
            staged = stage(entries)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = pool.map(stage, [entries[i::workers] for i in range(workers)])
                staged = [f for part in parts for f in part]
        if want_version and version_file:
            staged.append(
                stage_version_file(version_file, action.package, action.instance_id, staging)
            )
        if transfer is not None:
            transfer.done()
        rooted = [
            InstalledFile(prefix + f.path, f.size, f.mtime_ns, f.mode, f.sha256, f.symlink)
            for f in staged
        ]
        # Staged paths stay package-relative; remember the staging dir to map back.
        return _Staged(action, txn, staging, rooted)

    # commit -------------------------------------------------------------------------

    def _protected(self, staged: Sequence[_Staged]) -> set[str]:
        """Every path some desired package will hold after this run: never deleted."""
        by_identity = self.state.by_identity()
        full = {
            (s.action.subdir, s.action.package): s for s in staged if s.action.kind in FULL_KINDS
        }
        protected: set[str] = set()
        for d in self.plan.desired:
            item = full.get(d.identity)
            if item is not None:
                protected.update(f.path for f in item.files)
            else:
                slot = by_identity.get(d.identity)
                if slot is not None:
                    protected.update(f.path for f in slot.files())
        return protected

    def _commit(self, item: _Staged, protected: set[str]) -> None:
        a = item.action
        slot = self.state.slot_for(a.subdir, a.package)
        paths = tuple(f.path for f in item.files)
        foreign = self.state.foreign_for(a.subdir, a.package)
        if foreign is not None:  # taking over the cipd client's deployment: its paths too
            paths += tuple(sorted(foreign.owned_paths() - set(paths)))
        slot.write_pending(Pending(item.txn, a.instance_id, paths), a.subdir, a.package)
        if a.subdir:
            self._make_dirs(a.subdir)
        self._merge_into_place(item.staging, a.subdir, pause_midway=True)
        for directory in self._entered:
            fsync_directory(directory)
        self._entered.clear()
        if a.kind is ActionKind.REPAIR:
            repaired = {f.path: f for f in item.files}
            files = [repaired.get(f.path, f) for f in slot.files()]
        else:
            files = item.files
        self.checkpoint("commit")
        slot.commit(SlotRecord(a.subdir, a.package, a.instance_id, item.txn), files)
        self.checkpoint("committed")
        self._cleanup(slot, protected)
        if foreign is not None:
            self._drop_foreign(foreign)
        self.inst.say(a.describe().replace(a.kind.value, PAST_TENSE[a.kind], 1))

    def _merge_into_place(
        self, staged_dir: Path, rel_dir: str, *, pause_midway: bool = False
    ) -> None:
        """Move the staged tree into ``root/rel_dir``: a directory the root does not have
        yet moves in one rename, an existing one is merged entry by entry."""
        entries = sorted(os.scandir(staged_dir), key=lambda e: e.name)
        half = max(1, len(entries) // 2)
        for i, entry in enumerate(entries, 1):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            target = self.root / rel
            try:
                target_is_dir: bool | None = stat.S_ISDIR(os.lstat(target).st_mode)
            except FileNotFoundError:
                target_is_dir = None  # nothing there
            try:
                if entry.is_dir(follow_symlinks=False):
                    if target_is_dir:
                        self._merge_into_place(Path(entry.path), rel)
                    else:
                        if target_is_dir is False:
                            target.unlink()  # an old file where a directory goes (ours)
                        os.rename(entry.path, target)
                        self._entered.add(target.parent)
                else:
                    if target_is_dir:
                        shutil.rmtree(target)  # checked before: holds only files we installed
                    os.replace(entry.path, target)
                    self._entered.add(target.parent)
            except OSError as exc:
                raise InstallError(f"cannot install {target}: {exc}", "io_error") from None
            if pause_midway and i == half:
                self.checkpoint("move")

    def _make_dirs(self, rel_dir: str) -> None:
        current = self.root
        for part in rel_dir.split("/"):
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                current.mkdir(exist_ok=True)
                continue
            if not stat.S_ISDIR(st.st_mode):
                # A file or link of an old version where a directory must go (checked).
                current.unlink()
                current.mkdir()

    def _cleanup(self, slot: Slot, protected: set[str]) -> None:
        keep = {f.path for f in slot.files()} | protected
        stale = sorted(slot.owned_paths() - keep)
        self._delete_paths(stale)
        slot.forget_history()

    def _remove(self, action: Action, protected: set[str]) -> None:
        slot = self.state.slot_for(action.subdir, action.package)
        owned = slot.owned_paths()
        foreign = self.state.foreign_for(action.subdir, action.package)
        if foreign is not None:
            owned |= foreign.owned_paths()
        # Journal first: once state.json is gone the slot holds only pending.json, which
        # a later run finishes (still unwanted) or reinstalls from scratch (wanted again).
        slot.begin_removal(
            new_txn(), action.instance_id, tuple(sorted(owned)), action.subdir, action.package
        )
        if foreign is not None:
            self._drop_foreign(foreign)
        self.checkpoint("remove")
        self._delete_paths(sorted(owned - protected))
        slot.delete()
        self.inst.say(action.describe().replace("remove", "removed", 1))

    def _drop_foreign(self, foreign: Slot) -> None:
        """Forget the cipd client's record of a package we now hold (or removed)."""
        shutil.rmtree(foreign.directory, ignore_errors=True)
        self.state.slots.pop(foreign.key, None)

    def _delete_paths(self, paths: Sequence[str]) -> None:
        """Delete files and links this root's records own, then the directories they
        leave empty; never through a symlink (see `caproni_tasks.packages.removal`)."""
        dirs: set[str] = set()
        half = max(1, len(paths) // 2)
        for i, rel in enumerate(paths, 1):
            try:
                remove_file_beneath(self.root, rel)
            except OSError as exc:
                self.result.warnings.append(f"could not remove {self.root / rel}: {exc}")
            dirs.update(parents(rel))
            if i == half:
                self.checkpoint("cleanup")
        for rel_dir in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
            remove_dir_beneath(self.root, rel_dir)  # kept when not empty or not ours


def _parent_kind(path: Path, owned: bool) -> str:
    """A parent of a path to write: a real "dir", "absent", an old file or link of
    ours ("ours") that a directory replaces, or something else ("foreign")."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "absent"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "ours" if owned else "foreign"


def _clash(path: str, a: tuple[str, str], b: tuple[str, str], detail: str = "") -> str:
    def name(ident: tuple[str, str]) -> str:
        return f"{ident[1]} (subdir {ident[0]!r})" if ident[0] else ident[1]

    return f"two packages claim the same path {path!r}{detail}: {name(a)} and {name(b)}"
