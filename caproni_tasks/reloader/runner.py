"""A whole ``invoke run`` session: reloaders, one supervisor, signals and the state file.

SIGINT, SIGTERM and SIGHUP all end the session the same way: every process group is
stopped (dependants first), managers undo their setup, descendants that escaped their
group are stopped, and the state file is removed. A second SIGINT (or SIGTERM) while
stopping kills whatever is left at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from caproni_tasks.config.model import ProcessRef
from caproni_tasks.reloader import proctree
from caproni_tasks.reloader.contract import ReloaderError, RunFailedError
from caproni_tasks.reloader.output import Output
from caproni_tasks.reloader.proctree import MARKER_ENV
from caproni_tasks.reloader.session import (
    ProcessRecord,
    SessionRecord,
    clean_session,
    control_socket,
    current_process_start,
    read_session,
    remove_session,
    session_file,
    stop_marked,
    write_session,
)
from caproni_tasks.reloader.supervisor import SUPERVISOR_LABEL, Supervisor, SupervisorOptions

if TYPE_CHECKING:
    from pathlib import Path

    from caproni_tasks.config.model import CaproniConfig, LifecycleHook, ReloaderSpec
    from caproni_tasks.reloader.control import ControlServer, LogBook
    from caproni_tasks.reloader.hooks import HookRunner
    from caproni_tasks.reloader.selection import Selection
    from caproni_tasks.reloader.variables import VariableHub

__all__ = ["RunResult", "SessionWriter", "run_session", "select_reloaders"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds between a state change and the state file write that records it.
WRITE_DELAY = 0.05


@dataclass
class RunResult:
    exit_code: int
    stopped_by: str | None = None  # the signal's name, when one ended the session
    errors: list[str] = field(default_factory=list)


def select_reloaders(config: CaproniConfig, only: Sequence[str]) -> list[ReloaderSpec]:
    """The reloaders to run, in file order (edit mode applied, see
    `caproni_tasks.reloader.selection`); `RunFailedError` names unknown ones."""
    from caproni_tasks.reloader.selection import select

    return list(select(config, only).run)


def _known_processes(reloaders: Sequence[ReloaderSpec]) -> list[ProcessRef]:
    """The processes each reloader's kind says its settings describe (for the output's
    name column, before they start)."""
    from caproni_tasks.config.kinds import find_kind

    refs: list[ProcessRef] = []
    for reloader in reloaders:
        kind = find_kind(reloader.type, quiet=True)
        if kind is not None and kind.process_names is not None:
            names = kind.process_names(reloader.settings)
            refs.extend(ProcessRef(reloader.name, name) for name in names)
    return refs


class SessionWriter:
    """Keeps the state file in step with the supervisor; the changes of a moment
    (``WRITE_DELAY``) become one write."""

    def __init__(self, config: CaproniConfig, reloaders: Sequence[ReloaderSpec]) -> None:
        self.path = session_file(config.path)
        self.record = SessionRecord(
            config=str(config.path),
            supervisor_pid=os.getpid(),
            supervisor_start=current_process_start(),
            started_at=time.time(),
            reloaders={r.name: r.type for r in reloaders},
        )
        self.supervisor: Supervisor | None = None
        self._scheduled = False
        self.enabled = True

    def schedule(self) -> None:
        if self._scheduled or not self.enabled:
            return
        self._scheduled = True
        # Slightly later, not at once: keeps the write off a restart's critical path
        # and folds the few state changes of one restart into one write.
        asyncio.get_running_loop().call_later(WRITE_DELAY, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self.enabled:
            return
        if self.supervisor is not None:
            self.record.processes = [
                ProcessRecord(
                    reloader=p.reloader,
                    name=p.spec.name,
                    state=str(p.state),
                    pid=p.pid,
                    pgid=p.pid,
                    pid_start=p.pid_start,
                    restarts=p.restarts,
                    last_exit=p.last_exit,
                    started_at=p.started_at,
                    command=p.spec.shown,
                    stop_signal=p.spec.stop_signal,
                    stop_timeout=p.spec.stop_timeout,
                    term_grace=p.spec.term_grace,
                )
                for p in self.supervisor.processes.values()
            ]
        with contextlib.suppress(OSError):
            write_session(self.path, self.record)


async def run_session(
    config: CaproniConfig,
    *,
    only: Sequence[str] = (),
    options: SupervisorOptions | None = None,
    output: Output | None = None,
    handle_signals: bool = True,
    subreaper: bool = True,
    prepare: bool = False,
) -> RunResult:
    """Run the selected reloaders until a stop signal, or until every process has ended
    for good. Raises `RunFailedError` before starting anything when the session cannot
    run (unknown reloader, a live session for the same config).

    The config's lifecycle hooks run first (``prepare`` forces the prepare hooks); a
    failing hook ends the session with the hook's exit code.
    """
    from caproni_tasks.reloader.control import LogBook
    from caproni_tasks.reloader.selection import select

    selection = select(config, only)
    reloaders = list(selection.run)
    output = output or Output()
    book = LogBook()  # recent lines per process, for `invoke logs`
    output.listeners.append(book.record)
    try:
        return await _run_session(
            config, reloaders, selection, book, options, output, handle_signals, subreaper, prepare
        )
    finally:
        output.listeners.remove(book.record)


async def _run_session(
    config: CaproniConfig,
    reloaders: list[ReloaderSpec],
    selection: Selection,
    book: LogBook,
    options: SupervisorOptions | None,
    output: Output,
    handle_signals: bool,
    subreaper: bool,
    prepare: bool,
) -> RunResult:
    from caproni_tasks.reloader.hooks import HookRunner, reset_current_runner, set_current_runner
    from caproni_tasks.reloader.registry import new_manager
    from caproni_tasks.reloader.selection import skipped_message
    from caproni_tasks.reloader.variables import VariableHub

    if selection.skipped:
        for line in skipped_message(config, selection.skipped).splitlines():
            output.event(SUPERVISOR_LABEL, line.strip())
    _claim_session(config, output)
    try:
        managers = {r.name: new_manager(r.type) for r in reloaders}
    except ReloaderError as exc:
        raise RunFailedError(str(exc)) from exc
    if subreaper:
        proctree.set_child_subreaper()

    writer = SessionWriter(config, reloaders)
    variables = VariableHub(
        config.runtimevars,
        on_error=lambda name, message: output.event(
            SUPERVISOR_LABEL,
            f"runtime variable {name}: {message}",
            error=True,
        ),
    )
    supervisor = Supervisor(
        output=output,
        options=options,
        variables=variables,
        expected=_known_processes(reloaders),
        session=[r.name for r in reloaders],
        on_change=writer.schedule,
        marker=writer.record.marker,
    )
    writer.supervisor = supervisor

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    result = RunResult(exit_code=0)
    signals_seen: list[int] = []

    def on_signal(signum: int) -> None:
        signals_seen.append(signum)
        if len(signals_seen) == 1:
            result.stopped_by = signal.Signals(signum).name
            output.event(SUPERVISOR_LABEL, f"{result.stopped_by}: stopping every process")
            stop.set()
        elif signum in (signal.SIGINT, signal.SIGTERM):
            output.event(
                SUPERVISOR_LABEL, "interrupted again: killing every process now", error=True
            )
            for process in supervisor.processes.values():
                process.kill_now()

    if handle_signals:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, on_signal, signum)
        # Nobody reads our output any more (`| head -1` done): stop as on SIGTERM.
        output.on_closed = lambda: loop.call_soon_threadsafe(on_signal, signal.SIGPIPE)
    control = await _start_control(config, book, supervisor, output)
    if control is not None:
        writer.record.control = str(control.path)
    writer.flush()  # after the handlers: a signal from here on still cleans up
    hooks = HookRunner(
        output,
        config.path,
        force_prepare=prepare,
        env={MARKER_ENV: writer.record.marker},
    )
    if not await _run_config_hooks(config, hooks, stop, result):
        await _finish_early(supervisor, variables, writer, config, loop, handle_signals)
        if control is not None:
            await control.close()
        return result
    hooks_token = set_current_runner(hooks)  # kinds run their own hooks through it
    tasks: dict[str, asyncio.Task[object]] = {
        name: asyncio.create_task(
            managers[name].run(reloader, config, supervisor), name=f"reloader {name}"
        )
        for name, reloader in ((r.name, r) for r in reloaders)
    }
    stopper: asyncio.Task[object] = asyncio.create_task(stop.wait())
    try:
        pending: set[asyncio.Task[object]] = set(tasks.values())
        while pending and not stop.is_set():
            done, pending = await asyncio.wait(
                pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(stopper)
            for task in done:
                if task is stopper or task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    name = next(n for n, t in tasks.items() if t is task)
                    message = str(error) if isinstance(error, ReloaderError) else repr(error)
                    result.errors.append(f"{name}: {message}")
                    output.event(SUPERVISOR_LABEL, f"reloader {name}: {message}", error=True)
                    stop.set()
    finally:
        stopper.cancel()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await supervisor.close()
        await variables.close()
        if control is not None:
            await control.close()
        if subreaper:
            await _stop_orphans(supervisor)
        await _end_session(writer, config, loop, handle_signals)
        reset_current_runner(hooks_token)
    if result.errors:
        result.exit_code = result.exit_code or 1
    elif result.stopped_by is None:
        # Everything ended by itself: succeed only if every process exited cleanly.
        processes = list(supervisor.processes.values())
        failed = [p for p in processes if p.last_exit not in (0, None) or p.pid is None]
        result.exit_code = 1 if failed else 0
        if processes:
            summary = ", ".join(f"{p.label} {p.outcome()}" for p in processes)
            output.event(
                SUPERVISOR_LABEL,
                f"every process has ended and none can restart: {summary}",
                error=bool(failed),
            )
    return result


async def _run_config_hooks(
    config: CaproniConfig, hooks: HookRunner, stop: asyncio.Event, result: RunResult
) -> bool:
    """The config's lifecycle hooks, by scope (the config's own, then each repository
    fragment's); False when one failed or a stop signal came first."""
    from caproni_tasks.reloader.hooks import HookFailedError

    async def all_scopes() -> None:
        for scope, directory, scoped in hook_scopes(config):
            label = "hooks" if scope == "hooks" else f"hooks:{directory.name}"
            await hooks.run(scoped, scope=scope, directory=directory, label=label)

    if not config.lifecycle_hooks:
        return True
    task = asyncio.create_task(all_scopes())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return False
    error = task.exception()
    if isinstance(error, HookFailedError):
        result.errors.append(str(error))
        result.exit_code = error.exit_code
        return False
    if error is not None:
        raise error
    return True


def hook_scopes(
    config: CaproniConfig,
) -> list[tuple[str, Path, tuple[LifecycleHook, ...]]]:
    """Top-level hooks grouped by the directory they run in: ``(scope, directory, hooks)``
    in merge order. The scope names the directory relative to the config."""
    groups: dict[Path, list[LifecycleHook]] = {}
    for hook in config.lifecycle_hooks:
        directory = hook.directory if hook.directory is not None else config.directory
        groups.setdefault(directory, []).append(hook)
    scopes = []
    for directory, listed in groups.items():
        try:
            shown = str(directory.relative_to(config.directory))
        except ValueError:
            shown = str(directory)
        scopes.append((f"hooks {shown}" if shown != "." else "hooks", directory, tuple(listed)))
    return scopes


async def _finish_early(
    supervisor: Supervisor,
    variables: VariableHub,
    writer: SessionWriter,
    config: CaproniConfig,
    loop: asyncio.AbstractEventLoop,
    handle_signals: bool,
) -> None:
    """End a session that never started its reloaders (a hook failed, or a signal)."""
    await supervisor.close()
    await variables.close()
    await _end_session(writer, config, loop, handle_signals)


async def _end_session(
    writer: SessionWriter,
    config: CaproniConfig,
    loop: asyncio.AbstractEventLoop,
    handle_signals: bool,
) -> None:
    """The last of every session, once its processes are stopped: daemons that left
    both their group and our tree (they still carry the marker) stopped, the signal
    handlers removed, the session state gone."""
    await asyncio.to_thread(stop_marked, writer.record.marker)
    if handle_signals:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    writer.enabled = False
    remove_session(config.path)


async def _start_control(
    config: CaproniConfig, book: LogBook, supervisor: Supervisor, output: Output
) -> ControlServer | None:
    """Listen on the session's control socket (``invoke logs``/``restart``); a session
    that cannot (an unusable state directory) runs without it and says so."""
    from caproni_tasks.reloader.control import ControlServer

    control = ControlServer(control_socket(config.path), book, supervisor)
    try:
        await control.start()
    except OSError as exc:
        output.event(
            SUPERVISOR_LABEL,
            f"no control socket ({exc.strerror or exc}): `invoke logs` and `invoke restart` "
            "cannot reach this session",
            error=True,
        )
        return None
    return control


def _claim_session(config: CaproniConfig, output: Output) -> None:
    """Refuse a second live session for one config; repair a crashed one's leftovers."""
    existing = read_session(config.path)
    if existing is not None and existing.alive and existing.supervisor_pid != os.getpid():
        raise RunFailedError(
            f"a session for {config.path} is already running (pid {existing.supervisor_pid}); "
            "see `invoke status`"
        )
    if session_file(config.path).exists():
        report = clean_session(config.path)
        output.event(SUPERVISOR_LABEL, report.summary())


async def _stop_orphans(supervisor: Supervisor) -> None:
    """As a subreaper we inherit descendants whose parents died (daemons that detached
    with ``setsid``): stop them too, then reap them."""
    keep = {p.pid for p in supervisor.processes.values() if p.pid is not None}
    orphans = proctree.reap_orphans(keep)
    if not orphans:
        return
    proctree.signal_pids(orphans, signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        orphans = proctree.reap_orphans(keep)
        if not orphans:
            return
        await asyncio.sleep(0.02)
    proctree.signal_pids(orphans, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while proctree.reap_orphans(keep) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
