"""Lifecycle hooks: scripts that run before a session's processes start.

Two types, as in Caproni:

- ``edit_mode_prepare`` runs before the first start of a *scope* (the config's own
  hooks, one repository fragment, one reloader), again whenever that scope's hook list
  changes, and whenever ``invoke run --prepare`` asks for it. A digest of the list is
  remembered in the session state directory once every prepare hook succeeded.
- ``edit_mode_start`` runs before the processes start, on every run.

Each hook runs as ``/bin/sh -c SCRIPT`` in its directory, in its own process group,
with its output prefixed like a process's. A failing hook stops the run: `HookFailedError`
carries its exit code. Kinds call the same code for their own hooks::

    from caproni_tasks.reloader.hooks import run_lifecycle_hooks

    await run_lifecycle_hooks(
        settings.lifecycle_hooks,
        scope=f"reloader {reloader.name}",  # digests of prepare hooks are kept per scope
        directory=reloader.directory,  # for hooks without a directory of their own
        label=reloader.name,  # output prefix
    )

Inside ``invoke run`` the session's `HookRunner` (output, state, ``--prepare``) is found
through a context variable; outside, a runner writing to stdout is made on the spot.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from caproni_tasks.config.model import LifecycleHook
from caproni_tasks.reloader.contract import RunFailedError
from caproni_tasks.reloader.output import LineAssembler, Output

__all__ = [
    "HOOK_TYPES",
    "PREPARE",
    "START",
    "HookFailedError",
    "HookReport",
    "HookRunner",
    "current_runner",
    "hook_runner",
    "hooks_digest",
    "hooks_state_file",
    "reset_current_runner",
    "run_lifecycle_hooks",
    "set_current_runner",
]

PREPARE = "edit_mode_prepare"
START = "edit_mode_start"
HOOK_TYPES = (PREPARE, START)

#: Seconds a stopped hook's group gets between SIGTERM and SIGKILL.
STOP_GRACE = 5.0
#: Lines of a failed hook's output repeated in its error.
TAIL_LINES = 20


class HookFailedError(RunFailedError):
    """A lifecycle hook exited non-zero (or could not start): the run stops."""

    def __init__(
        self, hook: LifecycleHook, scope: str, exit_code: int, tail: Sequence[str] = ()
    ) -> None:
        self.hook = hook
        self.scope = scope
        self.exit_code = exit_code
        self.tail = tuple(tail)
        where = f" in {hook.directory}" if hook.directory is not None else ""
        at = ""
        if hook.location is not None:
            loc = hook.location
            at = f" ({loc.file}:{loc.line}:{loc.column})"
        super().__init__(
            f"{scope}: lifecycle hook {hook.type} {hook.script!r}{where} failed with "
            f"exit code {exit_code}{at}"
        )


@dataclass
class HookReport:
    """What one call ran: hooks in order, and whether the prepare hooks ran."""

    ran: list[LifecycleHook] = field(default_factory=list)
    prepared: bool = False


def hooks_state_file(config_path: Path) -> Path:
    """Where the digests of prepared hook lists of ``config_path``'s sessions live."""
    from caproni_tasks.reloader.session import session_file

    path = session_file(Path(config_path))
    return path.with_name(path.stem + ".hooks.json")


def hooks_digest(hooks: Sequence[LifecycleHook], directory: Path) -> str:
    """A digest of a scope's hook list: type, script and directory of each, in order."""
    listed = [
        [hook.type, hook.script, str(hook.directory if hook.directory is not None else directory)]
        for hook in hooks
    ]
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest()


def _read_state(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, str)}


def _write_state(path: Path, state: Mapping[str, str]) -> None:
    from caproni_tasks.atomicfile import write_atomic

    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, json.dumps(dict(state), indent=1), mode=0o600, durable=False)


@dataclass
class HookRunner:
    """Runs hook lists for one session: where output goes, where digests are kept."""

    output: Output
    #: The session's config: its digests are kept per config. ``None``: prepare hooks
    #: run on every call (nothing is remembered).
    config_path: Path | None = None
    #: ``invoke run --prepare``: run prepare hooks even when their list is unchanged.
    force_prepare: bool = False
    #: Added to each hook's environment (e.g. the session marker).
    env: Mapping[str, str] = field(default_factory=dict)

    async def run(
        self,
        hooks: Sequence[LifecycleHook],
        *,
        scope: str,
        directory: Path,
        label: str | None = None,
    ) -> HookReport:
        """Prepare hooks when due, then start hooks, in order; raises `HookFailedError`.

        ``directory`` is used for hooks that carry none of their own; ``label`` prefixes
        their output (default: ``scope``).
        """
        report = HookReport()
        prepare = [h for h in hooks if h.type == PREPARE]
        start = [h for h in hooks if h.type == START]
        digest = hooks_digest(hooks, directory)
        state_path = hooks_state_file(self.config_path) if self.config_path else None
        state = _read_state(state_path) if state_path is not None else {}
        if prepare and (self.force_prepare or state.get(scope) != digest):
            for hook in prepare:
                await self._run_one(hook, scope, directory, label or scope)
                report.ran.append(hook)
            report.prepared = True
        if state_path is not None and state.get(scope) != digest:
            state = _read_state(state_path)  # another scope may have written meanwhile
            state[scope] = digest
            _write_state(state_path, state)
        for hook in start:
            await self._run_one(hook, scope, directory, label or scope)
            report.ran.append(hook)
        return report

    async def _run_one(self, hook: LifecycleHook, scope: str, directory: Path, label: str) -> None:
        cwd = hook.directory if hook.directory is not None else directory
        self.output.event(label, f"running {hook.type} hook: {hook.script}")
        if not cwd.is_dir():
            self.output.event(label, f"directory {cwd} does not exist", error=True)
            raise HookFailedError(hook, scope, 1, (f"directory {cwd} does not exist",))
        env = {**os.environ, **self.env}
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                hook.script,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            message = f"cannot start: {exc.strerror or exc}"
            self.output.event(label, message, error=True)
            raise HookFailedError(hook, scope, 127, (message,)) from exc
        tail: list[str] = []
        try:
            await self._pump(proc, label, tail)
            code = await proc.wait()
        except asyncio.CancelledError:
            await _stop_group(proc)
            raise
        if code != 0:
            exit_code = 128 - code if code < 0 else code  # killed by a signal: 128 + N
            self.output.event(label, f"failed with exit code {exit_code}", error=True)
            raise HookFailedError(hook, scope, exit_code, tail)
        self.output.event(label, "done")

    async def _pump(self, proc: asyncio.subprocess.Process, label: str, tail: list[str]) -> None:
        assert proc.stdout is not None
        assembler = LineAssembler()
        while True:
            chunk = await proc.stdout.read(65536)
            lines = assembler.feed(chunk) if chunk else assembler.flush()
            if lines:
                self.output.lines(label, lines)
                tail.extend(line.decode(errors="replace") for line in lines)
                del tail[:-TAIL_LINES]
            if not chunk:
                return


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """TERM the hook's process group, KILL it after `STOP_GRACE`, and reap it."""
    for signum, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), wait)
            return
        except TimeoutError:
            continue


_current: contextvars.ContextVar[HookRunner | None] = contextvars.ContextVar(
    "caproni_tasks_hook_runner", default=None
)


def current_runner() -> HookRunner | None:
    """The runner of the ``invoke run`` session this code runs in, if any."""
    return _current.get()


def set_current_runner(runner: HookRunner) -> contextvars.Token[HookRunner | None]:
    """Make ``runner`` the current one (for this context and tasks created from it)."""
    return _current.set(runner)


def reset_current_runner(token: contextvars.Token[HookRunner | None]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def hook_runner(runner: HookRunner) -> Iterator[HookRunner]:
    """Make ``runner`` the current one for code (and tasks created) inside the block."""
    token = set_current_runner(runner)
    try:
        yield runner
    finally:
        reset_current_runner(token)


async def run_lifecycle_hooks(
    hooks: Sequence[LifecycleHook],
    *,
    scope: str,
    directory: Path,
    label: str | None = None,
    runner: HookRunner | None = None,
) -> HookReport:
    """Run ``hooks`` for ``scope`` (a stable name: its prepare digest is kept under it)
    in ``directory`` (for hooks without their own), through ``runner`` or the session's.

    Raises `HookFailedError` (a `RunFailedError`) when a hook fails; its ``exit_code``
    becomes the exit code of ``invoke run``.
    """
    runner = runner or current_runner() or HookRunner(Output())
    return await runner.run(hooks, scope=scope, directory=directory, label=label)
