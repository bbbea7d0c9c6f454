"""Make a root match a list of desired (subdir, package, instance ID).

`Installer.ensure` is the one entry point: read the small state records, plan
(`caproni_tasks.packages.planning`), and when something must change, take the root's
lock, plan again and carry the plan out (`caproni_tasks.packages.execution`). A run
with nothing to do reads only the state records: no lock, no repository, no cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from caproni_tasks.packages.planning import (
    PARANOID_MODES,
    Action,
    ActionKind,
    Desired,
    InstallError,
    InstallResult,
    Plan,
    find_broken_files,
    load_state,
    plan_actions,
    subdir_problem,
)
from caproni_tasks.packages.state import RootState, StateError

if TYPE_CHECKING:
    from caproni_tasks.packages.cache import InstanceCache
    from caproni_tasks.packages.limits import PackageLimits
    from caproni_tasks.packages.progress import Reporter
    from caproni_tasks.packages.repository import Repository

__all__ = [
    "CHECKPOINTS",
    "PARANOID_MODES",
    "Action",
    "ActionKind",
    "Desired",
    "InstallError",
    "InstallResult",
    "Installer",
    "Plan",
    "find_broken_files",
    "subdir_problem",
]

#: The named points of a run that `Installer.checkpoint` is called at, in order.
CHECKPOINTS = ("download", "extract", "move", "commit", "committed", "cleanup", "remove")


def _no_checkpoint(point: str) -> None:
    """The default checkpoint observer: nothing."""


class Installer:
    """``Installer(root, cache, repository=...).ensure(desired, paranoid)``.

    ``repository`` is a factory so a no-op run never opens (or imports) a client.
    ``limits`` bound what a package file may unpack to (decompression bombs).
    Commits are durable (state records and the directory entries of renames are
    fsynced); ``durable_data`` also flushes the installed files' contents before the
    commit, so a power cut cannot leave a recorded file empty (costs a disk write of
    everything installed; see bench/README.md).
    ``checkpoint`` is called with each name of `CHECKPOINTS` as a run passes it: an
    observer for tests and tools that must stop a run at a known place. When not given,
    the class attribute `default_checkpoint` is used (a test harness may set it).
    """

    default_checkpoint: ClassVar[Callable[[str], None]] = staticmethod(_no_checkpoint)

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
        limits: PackageLimits | None = None,
        checkpoint: Callable[[str], None] | None = None,
        durable_data: bool = False,
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
        self.limits = limits
        self.durable_data = durable_data
        self._checkpoint = checkpoint

    def plan(
        self,
        desired: Sequence[Desired],
        paranoid: str = "NotParanoid",
        state: RootState | None = None,
    ) -> Plan:
        """What a run would do, from the state records (and file stats in paranoid modes)."""
        state = state if state is not None else load_state(self.root)
        try:
            return plan_actions(self.root, state, desired, paranoid)
        except StateError as exc:
            raise InstallError(str(exc), exc.error_code) from None

    def ensure(
        self, desired: Sequence[Desired], paranoid: str = "NotParanoid", *, dry_run: bool = False
    ) -> InstallResult:
        """Bring the root to ``desired``; with ``dry_run``, only plan (nothing is written)."""
        state = load_state(self.root)
        plan = self.plan(desired, paranoid, state)
        if dry_run:
            return InstallResult(plan, list(desired), dry_run=True)
        if plan.is_noop and not state.has_leftovers():
            return InstallResult(plan, list(desired))
        from caproni_tasks.packages.execution import Execution, clean_leftovers
        from caproni_tasks.packages.locking import FileLock, LockTimeoutError

        created = not os.path.lexists(self.root)
        state.state_dir.mkdir(parents=True, exist_ok=True)
        if created:
            _ignore_everything(self.root)
        lock = FileLock(state.lock_path, timeout=self.lock_timeout, on_wait=self.on_lock_wait)
        try:
            lock.acquire()
        except LockTimeoutError as exc:
            raise InstallError(str(exc), "io_error") from None
        try:
            # Another run may have changed the root while we waited: plan again.
            state = load_state(self.root)
            plan = self.plan(desired, paranoid, state)
            result = InstallResult(plan, list(desired))
            clean_leftovers(state)
            if not plan.is_noop:
                checkpoint = self._checkpoint or type(self).default_checkpoint
                try:
                    Execution(self, state, plan, result, checkpoint).execute()
                except StateError as exc:
                    raise InstallError(str(exc), exc.error_code) from None
            return result
        finally:
            lock.release()

    # --- for Execution ------------------------------------------------------------------

    def repository(self) -> Repository:
        with self._repo_lock:
            if self._repo_instance is None:
                self._repo_instance = self._repository()
            return self._repo_instance

    def say(self, text: str) -> None:
        if self.reporter is not None:
            self.reporter.line(text)


#: Written into a root the installer creates, as uv does for ``.venv``: tools installed
#: inside a repository never get committed.
GITIGNORE = "*\n"


def _ignore_everything(root: Path) -> None:
    """Put a ``.gitignore`` of ``*`` into a root just created (never over a file)."""
    try:
        with open(root / ".gitignore", "x", encoding="utf-8") as out:
            out.write(GITIGNORE)
    except FileExistsError:
        pass
