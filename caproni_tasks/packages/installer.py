"""Make a root match a list of desired (subdir, package, instance ID): plan, fetch, stage, commit.

One run, under the root's lock:

1. **plan** from the small state records: install / update / remove, finish or redo
   what an interrupted run left, and (paranoid modes) repair files that went missing
   or changed. Nothing else is read when nothing changed.
2. **fetch** every instance needed once, in parallel, through the shared cache.
3. **check** everything before writing: each package file is validated whole (names,
   links, manifest), the subdirs stay inside the root, no two packages claim one
   path, and no path would overwrite a file that caproni did not install.
4. **stage** each package into ``<root>/.cipd/tmp/<txn>`` (in parallel).
5. **commit** per package: write ``pending.json`` (the paths it may write), rename
   staged files into place, write its manifest and ``state.json`` (the commit point),
   then delete the files the previous version had and the new one does not, prune
   empty directories, drop ``pending.json``.

A SIGKILL anywhere leaves either an untouched slot, or a slot with ``pending.json``
that the next run reinstalls (before the commit) or finishes cleaning (after it):
see `caproni_tasks.packages.state`.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

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
    from caproni_tasks.packages.cache import InstanceCache
    from caproni_tasks.packages.format import FileEntry, PackageReader
    from caproni_tasks.packages.progress import Reporter
    from caproni_tasks.packages.repository import Repository

__all__ = [
    "PARANOID_MODES",
    "Action",
    "ActionKind",
    "Desired",
    "InstallError",
    "InstallResult",
    "Installer",
    "Plan",
    "pause_point",
]

PARANOID_MODES = ("NotParanoid", "CheckPresence", "CheckIntegrity")
#: A package gets one extraction thread per this many bytes (up to --jobs and the cores).
_BYTES_PER_WORKER = 16 << 20
#: Test-only hook: ``CAPRONI_TASKS_TEST_PAUSE_AT=<point>`` makes the installer create the
#: file named by ``CAPRONI_TASKS_TEST_PAUSE_MARKER`` at that point and wait there until
#: the file is deleted, so tests can SIGKILL it (or let it go) deterministically.
#: Points: download, extract, move, commit, committed, cleanup.
PAUSE_ENV = "CAPRONI_TASKS_TEST_PAUSE_AT"
PAUSE_MARKER_ENV = "CAPRONI_TASKS_TEST_PAUSE_MARKER"


def pause_point(point: str) -> None:
    """Wait at ``point`` while the test hook's marker file exists (see `PAUSE_ENV`)."""
    if os.environ.get(PAUSE_ENV) != point:
        return
    marker = Path(os.environ.get(PAUSE_MARKER_ENV) or "caproni-pause")
    marker.write_text(f"{os.getpid()}\n", encoding="utf-8")
    while marker.exists():
        time.sleep(0.02)


class InstallError(Exception):
    """A run that cannot proceed; ``error_code`` is the CIPD JSON-output code."""

    def __init__(self, message: str, error_code: str = "io_error") -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class Desired:
    subdir: str
    package: str
    instance_id: str

    @property
    def identity(self) -> tuple[str, str]:
        return (self.subdir, self.package)


class ActionKind(StrEnum):
    INSTALL = "install"
    UPDATE = "update"
    REINSTALL = "reinstall"  # an interrupted change is redone from scratch
    REPAIR = "repair"  # paranoid checks found missing or changed files
    FINISH = "finish"  # an interrupted cleanup after a commit is completed
    REMOVE = "remove"


#: Kinds that extract the whole package.
FULL_KINDS = (ActionKind.INSTALL, ActionKind.UPDATE, ActionKind.REINSTALL)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    subdir: str
    package: str
    instance_id: str  # the version the slot will hold (for REMOVE: the one removed)
    old_instance_id: str | None = None
    paths: tuple[str, ...] = ()  # REPAIR: the broken paths (relative to the root)

    def describe(self) -> str:
        where = f" in {self.subdir!r}" if self.subdir else ""
        if self.kind is ActionKind.UPDATE:
            return f"update {self.package}{where}: {self.old_instance_id} -> {self.instance_id}"
        if self.kind is ActionKind.REPAIR:
            shown = ", ".join(self.paths[:5]) + (" …" if len(self.paths) > 5 else "")
            return (
                f"repair {self.package}{where}: {len(self.paths)} file(s) missing or "
                f"changed ({shown})"
            )
        if self.kind is ActionKind.REINSTALL:
            return f"reinstall {self.package}{where} {self.instance_id} (a run was interrupted)"
        if self.kind is ActionKind.FINISH:
            return f"finish {self.package}{where}: remove files an interrupted update left"
        return f"{self.kind.value} {self.package}{where} {self.instance_id}"


@dataclass
class Plan:
    desired: list[Desired]
    actions: list[Action]

    @property
    def is_noop(self) -> bool:
        return not self.actions

    def count(self, kind: ActionKind) -> int:
        return sum(1 for a in self.actions if a.kind is kind)


@dataclass
class InstallResult:
    plan: Plan
    desired: list[Desired]
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        changed = {(a.subdir, a.package) for a in self.plan.actions}
        unchanged = sum(1 for d in self.desired if d.identity not in changed)
        parts = [
            f"{kind.value if self.dry_run else _PAST[kind]} {n}"
            for kind in ActionKind
            if (n := self.plan.count(kind))
        ]
        if not parts:
            return f"everything is up to date ({len(self.desired)} package(s))"
        summary = ", ".join(parts) + f"; {unchanged} unchanged"
        return f"dry run: would {summary}" if self.dry_run else summary


def root_path(subdir: str, name: str) -> str:
    return f"{subdir}/{name}" if subdir else name


def subdir_problem(subdir: str) -> str | None:
    """Why installing into ``subdir`` could write outside the root or over our state."""
    if not subdir:
        return None
    parts = subdir.split("/")
    if subdir.startswith("/") or ".." in parts:
        return "it leads outside the root (refused: installs never write outside the root)"
    if parts[0] == STATE_DIR:
        return f"{STATE_DIR}/ holds the installer's own state"
    return None


class Installer:
    """``Installer(root, cache, repository=...).ensure(desired, paranoid)``.

    ``repository`` is a factory so a no-op run never opens (or imports) a client.
    """

    def __init__(
        self,
        root: Path,
        cache: InstanceCache,
        repository: Callable[[], Repository],
        *,
        jobs: int = 4,
        reporter: Reporter | None = None,
        lock_timeout: float | None = 600.0,
        on_lock_wait: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.cache = cache
        self._repository = repository
        self._repo_instance: Repository | None = None
        self._repo_lock = threading.Lock()
        self.jobs = max(1, jobs)
        self.reporter = reporter
        self.lock_timeout = lock_timeout
        self.on_lock_wait = on_lock_wait

    # --- public -----------------------------------------------------------------------

    def plan(
        self,
        desired: Sequence[Desired],
        paranoid: str = "NotParanoid",
        state: RootState | None = None,
    ) -> Plan:
        """What a run would do, from the state records (and file stats in paranoid modes)."""
        if paranoid not in PARANOID_MODES:
            raise InstallError(
                f"unknown paranoid mode {paranoid!r} (choose {', '.join(PARANOID_MODES)})",
                "bad_argument_error",
            )
        _check_desired(desired)
        state = state if state is not None else _load_state(self.root)
        slots = state.by_identity()
        actions: list[Action] = []
        for d in desired:
            slot = slots.get(d.identity)
            actions.extend(self._plan_slot(d, slot, paranoid))
        wanted = {d.identity for d in desired}
        for identity, slot in sorted(slots.items()):
            if identity not in wanted:
                iid = (
                    slot.record.instance_id
                    if slot.record
                    else (slot.pending.instance_id if slot.pending else "")
                )
                actions.append(Action(ActionKind.REMOVE, identity[0], identity[1], iid))
        return Plan(list(desired), actions)

    def ensure(
        self, desired: Sequence[Desired], paranoid: str = "NotParanoid", *, dry_run: bool = False
    ) -> InstallResult:
        """Bring the root to ``desired``; with ``dry_run``, only plan (nothing is written)."""
        state = _load_state(self.root)
        plan = self.plan(desired, paranoid, state)
        if dry_run:
            return InstallResult(plan, list(desired), dry_run=True)
        if plan.is_noop and not state.has_leftovers():
            return InstallResult(plan, list(desired))
        from caproni_tasks.packages.locking import FileLock, LockTimeoutError

        state.state_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(state.lock_path, timeout=self.lock_timeout, on_wait=self.on_lock_wait)
        try:
            lock.acquire()
        except LockTimeoutError as exc:
            raise InstallError(str(exc), "io_error") from None
        try:
            # Another run may have changed the root while we waited: plan again.
            state = _load_state(self.root)
            plan = self.plan(desired, paranoid, state)
            result = InstallResult(plan, list(desired))
            _clean_leftovers(state)
            if not plan.is_noop:
                _Run(self, state, plan, result).execute()
            return result
        finally:
            lock.release()

    # --- planning ---------------------------------------------------------------------

    def _plan_slot(self, d: Desired, slot: Slot | None, paranoid: str) -> list[Action]:
        if slot is None:
            return [Action(ActionKind.INSTALL, d.subdir, d.package, d.instance_id)]
        record = slot.record
        if record is None or (slot.pending is not None and not slot.is_committed_pending):
            old = record.instance_id if record else None
            if old is not None and old != d.instance_id:
                return [Action(ActionKind.UPDATE, d.subdir, d.package, d.instance_id, old)]
            return [Action(ActionKind.REINSTALL, d.subdir, d.package, d.instance_id, old)]
        if record.instance_id != d.instance_id:
            return [
                Action(ActionKind.UPDATE, d.subdir, d.package, d.instance_id, record.instance_id)
            ]
        if slot.is_committed_pending:
            return [Action(ActionKind.FINISH, d.subdir, d.package, d.instance_id)]
        if paranoid == "NotParanoid":
            return []
        broken = find_broken_files(self.root, slot.files(), paranoid == "CheckIntegrity")
        if broken:
            return [
                Action(ActionKind.REPAIR, d.subdir, d.package, d.instance_id, paths=tuple(broken))
            ]
        return []

    # --- helpers for _Run ---------------------------------------------------------------

    def repository(self) -> Repository:
        with self._repo_lock:
            if self._repo_instance is None:
                self._repo_instance = self._repository()
            return self._repo_instance

    def say(self, text: str) -> None:
        if self.reporter is not None:
            self.reporter.line(text)


def _check_desired(desired: Sequence[Desired]) -> None:
    seen: set[tuple[str, str]] = set()
    for d in desired:
        problem = subdir_problem(d.subdir)
        if problem is not None:
            raise InstallError(
                f"cannot install {d.package} into subdir {d.subdir!r}: {problem}",
                "bad_argument_error",
            )
        if d.identity in seen:
            raise InstallError(
                f"package {d.package} is listed twice for subdir {d.subdir!r}", "bad_argument_error"
            )
        seen.add(d.identity)


def _load_state(root: Path) -> RootState:
    from caproni_tasks.packages.state import StateError

    try:
        return RootState.load(root)
    except StateError as exc:
        raise InstallError(str(exc), "io_error") from None


def find_broken_files(root: Path, files: Iterable[InstalledFile], integrity: bool) -> list[str]:
    """Paths that are missing or of the wrong type; with ``integrity`` also changed ones.

    A file whose size and mtime still match its manifest entry is trusted; otherwise
    its content is re-hashed, so touching a file costs a hash but no repair.
    """
    broken: list[str] = []
    for f in files:
        path = os.path.join(root, f.path)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            broken.append(f.path)
            continue
        if f.symlink is not None:
            if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != f.symlink:
                broken.append(f.path)
            continue
        if not stat.S_ISREG(st.st_mode):
            broken.append(f.path)
            continue
        if not integrity:
            continue
        changed = st.st_size != f.size or (st.st_mode & 0o7777) != f.mode
        if changed or (st.st_mtime_ns != f.mtime_ns and _sha256_of(path) != f.sha256):
            broken.append(f.path)
    return broken


def _sha256_of(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def _clean_leftovers(state: RootState) -> None:
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


class _Run:
    """One execution of a plan (the root lock is held by the caller)."""

    def __init__(self, installer: Installer, state: RootState, plan: Plan, result: InstallResult):
        self.inst = installer
        self.root = installer.root
        self.state = state
        self.plan = plan
        self.result = result
        self.readers: dict[tuple[str, str], PackageReader] = {}
        self.paths: dict[tuple[str, str], Path] = {}

    def execute(self) -> None:
        fetching = [
            a for a in self.plan.actions if a.kind in FULL_KINDS or a.kind is ActionKind.REPAIR
        ]
        try:
            self._fetch_all(fetching)
            new_files = self._check_all(fetching)
            staged = self._stage_all(fetching, new_files)
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
                pause_point("download")

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
        (an optional ``known_size(package, instance_id)`` method; other repositories'
        bars count bytes without a total)."""
        known_size = getattr(self.inst.repository(), "known_size", None)
        if not callable(known_size):
            return None
        size = known_size(package, instance_id)
        return size if isinstance(size, int) and size > 0 else None

    # check --------------------------------------------------------------------------

    def _open(self, action: Action) -> PackageReader:
        from caproni_tasks.packages.format import PackageFormatError, PackageReader

        key = (action.package, action.instance_id)
        reader = self.readers.get(key)
        if reader is None:
            try:
                reader = PackageReader(self.paths[key], expected_package=action.package)
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
            for parent in _parents(p):
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
        seen_dirs: dict[str, bool] = {}
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

    def _unmanaged(self, p: str, owned: set[str], seen_dirs: dict[str, bool]) -> str | None:
        """Why writing root-relative ``p`` would clobber something that is not ours."""
        for parent in _parents(p):
            ok = seen_dirs.get(parent)
            if ok is None:
                try:
                    st = os.lstat(self.root / parent)
                except (FileNotFoundError, NotADirectoryError):
                    ok = True
                else:
                    ok = stat.S_ISDIR(st.st_mode) or parent in owned
                seen_dirs[parent] = ok
            if not ok:
                return f"{parent} exists and is not a directory"
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
                pause_point("extract")

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
        slot.write_pending(Pending(item.txn, a.instance_id, paths), a.subdir, a.package)
        if a.subdir:
            self._make_dirs(a.subdir)
        self._merge_into_place(item.staging, a.subdir, pause_midway=True)
        if a.kind is ActionKind.REPAIR:
            repaired = {f.path: f for f in item.files}
            files = [repaired.get(f.path, f) for f in slot.files()]
        else:
            files = item.files
        pause_point("commit")
        slot.commit(SlotRecord(a.subdir, a.package, a.instance_id, item.txn), files)
        pause_point("committed")
        self._cleanup(slot, protected)
        self.inst.say(a.describe().replace(a.kind.value, _PAST[a.kind], 1))

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
                else:
                    if target_is_dir:
                        shutil.rmtree(target)  # checked before: holds only files we installed
                    os.replace(entry.path, target)
            except OSError as exc:
                raise InstallError(f"cannot install {target}: {exc}", "io_error") from None
            if pause_midway and i == half:
                pause_point("move")

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
        stale = sorted(slot.owned_paths() - protected)
        self._delete_paths(stale)
        slot.delete()
        self.inst.say(action.describe().replace("remove", "removed", 1))

    def _delete_paths(self, paths: Sequence[str]) -> None:
        dirs: set[str] = set()
        half = max(1, len(paths) // 2)
        for i, rel in enumerate(paths, 1):
            target = self.root / rel
            try:
                st = os.lstat(target)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is not None and not stat.S_ISDIR(st.st_mode):
                try:
                    target.unlink()
                except OSError as exc:
                    self.result.warnings.append(f"could not remove {target}: {exc}")
            dirs.update(_parents(rel))
            if i == half:
                pause_point("cleanup")
        for rel_dir in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
            try:
                os.rmdir(self.root / rel_dir)
            except OSError:
                continue  # not empty (or already gone): keep it


_PAST = {
    ActionKind.INSTALL: "installed",
    ActionKind.UPDATE: "updated",
    ActionKind.REINSTALL: "reinstalled",
    ActionKind.REPAIR: "repaired",
    ActionKind.FINISH: "finished",
    ActionKind.REMOVE: "removed",
}


def _parents(rel: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _clash(path: str, a: tuple[str, str], b: tuple[str, str], detail: str = "") -> str:
    def name(ident: tuple[str, str]) -> str:
        return f"{ident[1]} (subdir {ident[0]!r})" if ident[0] else ident[1]

    return f"two packages claim the same path {path!r}{detail}: {name(a)} and {name(b)}"
