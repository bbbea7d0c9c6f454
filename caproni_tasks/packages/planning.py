"""What an ensure run would do: compare the desired packages with a root's state records.

Pure planning: reads the small state files (and, in paranoid modes, stats or hashes the
installed files) and writes nothing. `caproni_tasks.packages.execution` carries a plan out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from caproni_tasks.packages.state import STATE_DIR, InstalledFile, RootState, Slot, StateError

__all__ = [
    "FULL_KINDS",
    "PARANOID_MODES",
    "PAST_TENSE",
    "Action",
    "ActionKind",
    "Desired",
    "InstallError",
    "InstallResult",
    "Plan",
    "check_desired",
    "find_broken_files",
    "load_state",
    "parents",
    "plan_actions",
    "root_path",
    "subdir_problem",
]

PARANOID_MODES = ("NotParanoid", "CheckPresence", "CheckIntegrity")


class InstallError(Exception):
    """A run that cannot proceed; ``error_code`` is the CIPD JSON-output code."""

    def __init__(
        self, message: str, error_code: str = "io_error", details: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        #: ``{"package", "version", "subdir"}`` of the package at fault, when one is.
        self.details: dict[str, str] = dict(details or {})


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


#: How a summary names a finished action ("installed 2, removed 1").
PAST_TENSE = {
    ActionKind.INSTALL: "installed",
    ActionKind.UPDATE: "updated",
    ActionKind.REINSTALL: "reinstalled",
    ActionKind.REPAIR: "repaired",
    ActionKind.FINISH: "finished",
    ActionKind.REMOVE: "removed",
}


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
            f"{kind.value if self.dry_run else PAST_TENSE[kind]} {n}"
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


def plan_actions(
    root: Path, state: RootState, desired: Sequence[Desired], paranoid: str = "NotParanoid"
) -> Plan:
    """What a run would do, from the state records (and file stats in paranoid modes)."""
    if paranoid not in PARANOID_MODES:
        raise InstallError(
            f"unknown paranoid mode {paranoid!r} (choose {', '.join(PARANOID_MODES)})",
            "bad_argument_error",
        )
    check_desired(desired)
    slots = state.by_identity()
    actions: list[Action] = []
    for d in desired:
        actions.extend(_plan_slot(root, d, slots.get(d.identity), paranoid))
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


def _plan_slot(root: Path, d: Desired, slot: Slot | None, paranoid: str) -> list[Action]:
    if slot is None:
        return [Action(ActionKind.INSTALL, d.subdir, d.package, d.instance_id)]
    record = slot.record
    if record is None or (slot.pending is not None and not slot.is_committed_pending):
        old = record.instance_id if record else None
        if old is not None and old != d.instance_id:
            return [Action(ActionKind.UPDATE, d.subdir, d.package, d.instance_id, old)]
        return [Action(ActionKind.REINSTALL, d.subdir, d.package, d.instance_id, old)]
    if record.instance_id != d.instance_id:
        return [Action(ActionKind.UPDATE, d.subdir, d.package, d.instance_id, record.instance_id)]
    if slot.foreign:
        # The cipd client's deployment records no hashes: check presence, and take a
        # broken one over by reinstalling it in our layout.
        if paranoid == "NotParanoid" or not find_broken_files(root, slot.files(), False):
            return []
        return [Action(ActionKind.REINSTALL, d.subdir, d.package, d.instance_id)]
    if slot.is_committed_pending:
        return [Action(ActionKind.FINISH, d.subdir, d.package, d.instance_id)]
    if paranoid == "NotParanoid":
        return []
    broken = find_broken_files(root, slot.files(), paranoid == "CheckIntegrity")
    if broken:
        return [Action(ActionKind.REPAIR, d.subdir, d.package, d.instance_id, paths=tuple(broken))]
    return []


def check_desired(desired: Sequence[Desired]) -> None:
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


def load_state(root: Path) -> RootState:
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


def parents(rel: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
