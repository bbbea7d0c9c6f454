"""The process supervisor: one asyncio loop runs every process of every reloader.

Per process: started (directly, or with ``/bin/sh -c`` when its command needs a shell:
`caproni_tasks.reloader.shellcmd`) in a session (process group) of its own;
stopped by signalling the whole group — the stop signal, then SIGKILL after
``stop_timeout`` — and always waited for before a restart, so two copies never hold
one port. Crashes restart with exponential backoff up to ``max_restarts``; file and
runtime-variable changes restart at once (one restart per burst of changes). A
``ready`` check gates the processes that ``depends_on`` it. Output comes back as whole
lines behind a ``name |`` prefix.

Dependencies and restarts: a dependant waits for its dependencies to be ready each
time it (re)starts; a dependency's restart does not restart its running dependants
(they see the same thing as with any server restart and reconnect). At shutdown,
dependants are stopped before what they depend on.

Each process is composed of parts with one job each: `caproni_tasks.reloader.child`
(the OS child: spawn, signal, reap), `caproni_tasks.reloader.child_output` (its lines)
and `caproni_tasks.reloader.restart` (what follows an exit, paced by
`caproni_tasks.reloader.backoff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from caproni_tasks.config.model import ProcessRef
from caproni_tasks.reloader import proctree
from caproni_tasks.reloader.aio import cancel_and_wait, wait_timeout
from caproni_tasks.reloader.backoff import Backoff, BackoffPolicy
from caproni_tasks.reloader.child import Child, describe_exit
from caproni_tasks.reloader.child_output import OutputPump
from caproni_tasks.reloader.description import (
    ProcessDescription,
    read_env_files,
    start_environment,
)
from caproni_tasks.reloader.output import SUPERVISOR_LABEL, Output
from caproni_tasks.reloader.readiness import LogMatcher, describe, port_in_use, wait_ready
from caproni_tasks.reloader.restart import Action, Restarter

if TYPE_CHECKING:
    from caproni_tasks.reloader.variables import VariableHub
    from caproni_tasks.reloader.watching import WatchHub

__all__ = [
    "SUPERVISOR_LABEL",
    "ManagedProcess",
    "ProcessState",
    "Supervisor",
    "SupervisorOptions",
    "describe_exit",
]


class ProcessState(StrEnum):
    WAITING = "waiting"  # for dependencies to be ready or runtime variables to have values
    STARTING = "starting"  # running; its readiness check has not passed yet
    READY = "ready"  # running (and ready, when it has a check)
    BACKOFF = "backoff"  # crashed; restarting after a delay
    STOPPING = "stopping"
    EXITED = "exited"  # ended; its restart policy does not restart it (until a change)
    FAILED = "failed"  # crashed max_restarts times in a row (until a change)
    STOPPED = "stopped"  # stopped by the supervisor at shutdown

    @property
    def running(self) -> bool:
        return self in (ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING)


@dataclass(frozen=True)
class SupervisorOptions:
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    #: Quiet time (ms) that ends a burst of file changes whose end is not visible (a new
    #: file, a deletion, a write not closed yet); a finished save restarts at once.
    watch_step_ms: int = 20
    #: Longest time (ms) a continuous burst of changes is collected before a restart.
    watch_debounce_ms: int = 1600
    force_polling: bool | None = None
    shell: str = "/bin/sh"
    #: Environment every process starts from (default: this process's environment).
    base_env: Mapping[str, str] | None = None
    #: After this long, say which dependency a waiting process is still waiting for.
    waiting_notice_after: float = 15.0
    #: A partial output line (a prompt without newline) is shown after this long.
    partial_line_after: float = 0.5


class ManagedProcess:
    """One configured process and its lifecycle, across restarts.

    Composes the parts that each do one job: a `Child` per run (spawn, signal, reap),
    an `OutputPump` per run (its lines), and a `Restarter` (what follows an exit).
    Here: the states, dependencies, runtime variables, readiness and changes.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        reloader: str,
        spec: ProcessDescription,
        label: str,
    ) -> None:
        self.supervisor = supervisor
        self.reloader = reloader
        self.spec = spec
        self.ref = ProcessRef(reloader, spec.name)
        self.label = label
        self.state = ProcessState.WAITING
        self.restarts = 0
        self.last_exit: int | None = None
        self.command = ""
        self.ready = asyncio.Event()
        self.finished = asyncio.Event()  # set when stopped for good (shutdown)
        #: Set when the lifecycle is over by itself: ended, and nothing can restart it.
        self.ended = asyncio.Event()
        self.restarter = Restarter(
            spec.restart,
            max_restarts=spec.max_restarts,
            fatal_exits=spec.fatal_exits,
            backoff=supervisor.options.backoff,
            waits_for_change=self.restartable_by_change,
        )
        self.stop_signal = proctree.signal_number(spec.stop_signal)
        self._change = asyncio.Event()
        self._change_reason = ""
        #: The current (or last) run; a spawn that failed leaves the previous one here.
        self._child: Child | None = None
        self._pump: OutputPump | None = None
        self._log: LogMatcher | None = None
        self._port_warned = False
        #: Set by a restart asked for (``invoke restart``) after the lifecycle ended.
        self._revive = asyncio.Event()
        self._revive_reason = ""
        #: Set (and replaced) each time a run starts: what a restart request waits for.
        self._run_started = asyncio.Event()

    # -- the current run, as status shows it -------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def pid_start(self) -> float | None:
        return self._child.pid_start if self._child is not None else None

    @property
    def started_at(self) -> float | None:
        """Wall-clock start of the current (or last) run."""
        return self._child.started_at if self._child is not None else None

    @property
    def backoff(self) -> Backoff:
        return self.restarter.backoff

    def kill_now(self) -> None:
        """SIGKILL to everything of the current run, at once (a second interrupt)."""
        if self._child is not None:
            self._child.signal(signal.SIGKILL)

    # -- triggers -----------------------------------------------------------------

    @property
    def restartable_by_change(self) -> bool:
        return bool(self.spec.watch) or bool(self.spec.runtimevars)

    def request_restart(self, reason: str) -> None:
        """Restart because something changed; many requests before it happens = one."""
        if not self._change.is_set():
            self._change_reason = reason
            self._change.set()

    def files_changed(self, paths: list[str]) -> None:
        # Name a file rather than the directory created for it (``mkdir -p a/b; touch a/b/f``).
        first = next((p for p in paths if not os.path.isdir(p)), paths[0])
        shown = os.path.relpath(first, self.spec.cwd)
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        self.request_restart(f"{shown}{more} changed")

    def variable_changed(self, name: str) -> None:
        self.request_restart(f"runtime variable {name} changed")

    async def restart_requested(self, reason: str, timeout: float) -> str:
        """Restart at once (``invoke restart``): a running process is stopped and started
        again, one waiting out a backoff or a change starts now, one whose lifecycle had
        ended starts again. Returns how it went, once the new run started (or
        ``timeout`` seconds passed)."""
        if self.state == ProcessState.WAITING and not self.ended.is_set():
            return f"{self.label} is waiting ({self.outcome()}); it starts once it can"
        started = self._run_started
        if self.ended.is_set():
            self._revive_reason = reason
            self._revive.set()
        else:
            self.request_restart(reason)
        try:
            await wait_timeout(started.wait(), timeout)
        except TimeoutError:
            return f"{self.label}: restart requested; not started again within {timeout:g}s"
        return f"{self.label} restarted (pid {self.pid})"

    async def revived(self, group: Sequence[ManagedProcess]) -> bool:
        """After the lifecycle ended: wait for a restart request (True), or until every
        process of ``group`` has ended too (False: nothing is left to supervise)."""
        while not all(p.ended.is_set() for p in group):
            waits = {asyncio.ensure_future(self._revive.wait())} | {
                asyncio.ensure_future(p.ended.wait()) for p in group if not p.ended.is_set()
            }
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait(*waits)
            if self._revive.is_set():
                self._revive.clear()
                self.ended.clear()
                self.event(f"{self._revive_reason}: restarting")
                self.restarter.forgive()
                self.restarts += 1
                self.supervisor.changed()
                return True
        return False

    # -- state ----------------------------------------------------------------------

    def _set(self, state: ProcessState) -> None:
        if state != self.state:
            self.state = state
            self.supervisor.changed()

    def outcome(self) -> str:
        """How the last run ended, in words (for messages about a process that ended)."""
        if self.pid is None and self.last_exit is None:
            return f"{self.state} without starting"
        return f"{self.state} ({describe_exit(self.last_exit)})"

    def event(self, message: str, *, error: bool = False) -> None:
        self.supervisor.output.event(self.label, message, error=error)

    # -- lifecycle ------------------------------------------------------------------

    async def lifecycle(self) -> None:
        """Start, supervise and restart until cancelled, or until the process ended for
        good and no change can restart it."""
        while True:
            if not await self._wait_dependencies():
                return
            try:
                # Read at each start: an edited file counts from the next restart.
                from_files = read_env_files(self.spec)
            except ValueError as exc:
                self.event(f"cannot start: env_file {exc}", error=True)
                self.last_exit = 1
                if not await self._after_exit(ran_for=0.0):
                    return
                continue
            argv, command, env = await self._resolve(from_files)
            await self._warn_if_port_taken()
            self._change.clear()
            try:
                await self._spawn(argv, command, env)
            except OSError as exc:
                program = exc.filename if exc.filename is not None else argv[0]
                self.event(f"cannot start {program}: {exc.strerror or exc}", error=True)
                self.last_exit = 127 if isinstance(exc, FileNotFoundError) else 126
                if not await self._after_exit(ran_for=0.0):
                    return
                continue
            ran_since = time.monotonic()
            exited = await self._wait_exit_or_change()
            if not exited:
                self.event(f"{self._change_reason}: restarting")
                await self.stop(self.stop_signal)
                self.restarter.forgive()
                self.restarts += 1
                self.supervisor.changed()
                continue
            if not await self._after_exit(ran_for=time.monotonic() - ran_since):
                return

    async def _after_exit(self, ran_for: float) -> bool:
        """Act on the restart policy's verdict; False when the lifecycle is over."""
        verdict = self.restarter.after_exit(self.last_exit, ran_for)
        if verdict.action == Action.RESTART:
            self._set(ProcessState.BACKOFF)
            self.event(verdict.message, error=verdict.error)
            if await self._wait_change(verdict.delay):
                self.event(f"{self._change_reason}: restarting")
                self.restarter.forgive()
            self.restarts += 1
            self.supervisor.changed()
            return True
        self._set(ProcessState.FAILED if verdict.action == Action.FAILED else ProcessState.EXITED)
        self.event(verdict.message, error=verdict.error)
        if not self.restartable_by_change:
            return False
        await self._wait_change(None)
        self.event(f"{self._change_reason}: restarting")
        self.restarter.forgive()
        self.restarts += 1
        self.supervisor.changed()
        return True

    async def _wait_change(self, timeout: float | None) -> bool:
        """Wait for a change (True) or ``timeout`` seconds (False)."""
        try:
            await wait_timeout(self._change.wait(), timeout)
        except TimeoutError:
            return False
        self._change.clear()
        return True

    async def _wait_dependencies(self) -> bool:
        """Wait until every dependency is ready; False (and the process is `FAILED`)
        when one has ended for good without being ready, since nothing can make it so.
        A dependency that ended with exit 0 (a one-shot job such as a migration) has
        done its part."""

        def unmet() -> list[ManagedProcess]:
            return [
                d
                for d in self.supervisor.dependencies_of(self)
                if not d.ready.is_set() and not (d.ended.is_set() and d.last_exit == 0)
            ]

        deps = unmet()
        if not deps:
            return True
        self._set(ProcessState.WAITING)
        self.event(f"waiting for {', '.join(d.label for d in deps)} to be ready")
        notice = self.supervisor.options.waiting_notice_after
        while True:
            waits = {
                asyncio.ensure_future(event.wait()) for d in deps for event in (d.ready, d.ended)
            }
            try:
                done, _ = await asyncio.wait(
                    waits, timeout=notice, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                await cancel_and_wait(*waits)
            deps = unmet()
            if not deps:
                return True
            dead = [d for d in deps if d.ended.is_set()]
            if dead:
                self._set(ProcessState.FAILED)
                why = ", ".join(f"{d.label} {d.outcome()}" for d in dead)
                self.event(f"not starting: {why}; it will not restart", error=True)
                return False
            if not done:
                still = ", ".join(f"{d.label} ({d.state})" for d in deps)
                self.event(f"still waiting for {still}")

    async def _warn_if_port_taken(self) -> None:
        """A port that is busy before the process starts is another program's (a copy
        left running elsewhere): the readiness check would pass for it, and the process
        would probably fail to listen. Say so, once while it lasts."""
        if self.spec.ready is None:
            return
        port = await port_in_use(self.spec.ready)
        if port is not None and not self._port_warned:
            self.event(
                f"port {port} is already in use by another program (stop it, or use another "
                "port): this process may fail to listen, and its readiness check may pass "
                "for that program",
                error=True,
            )
        self._port_warned = port is not None

    async def _resolve(
        self, from_files: Mapping[str, str] | None = None
    ) -> tuple[list[str], str, dict[str, str]]:
        """The argv, the command line shown and the environment, with runtime variables
        substituted (and ``$$`` unescaped), waiting for variables that have no good
        value yet."""
        values: dict[str, str] = {}
        names = sorted(self.spec.runtimevars)
        if names:
            hub = self.supervisor.variables
            if hub is None:
                raise RuntimeError("runtime variables are used but the session has none")
            pending = hub.pending(names)
            if pending:
                self._set(ProcessState.WAITING)
                self.event(f"waiting for a value of runtime variable {', '.join(pending)}")
            values = await hub.values(names)
        argv, command, _ = self.spec.render(values, self.supervisor.options.shell)
        env = start_environment(
            self.spec,
            self.supervisor.base_env,
            values,
            from_files or {},
            marker=self.supervisor.marker,
        )
        return argv, command, env

    async def _spawn(self, argv: list[str], command: str, env: dict[str, str]) -> None:
        self.command = command
        if self.spec.ready is not None and self.spec.ready.log is not None:
            self._log = LogMatcher(self.spec.ready.log)
        else:
            self._log = None
        child = Child(
            argv,
            cwd=self.spec.cwd,
            env=env,
            keep_pids=self.supervisor.leader_pids,
            notify=lambda message: self.event(message, error=True),
        )
        try:
            await child.start()
        except asyncio.CancelledError:
            # Cancelled mid-spawn (a shutdown): a child that did start is adopted, so
            # the shutdown that follows stops its whole group, not just its pid.
            if child.started:
                self._adopt(child)
            raise
        self._adopt(child)
        self.event(f"started (pid {child.pid})")
        self._run_started.set()
        self._run_started = asyncio.Event()
        if self.spec.ready is None:
            self._set(ProcessState.READY)
            self.ready.set()
        else:
            self._set(ProcessState.STARTING)

    def _adopt(self, child: Child) -> None:
        """Take charge of a started run: its exit, its group, its output."""
        self._child = child
        # ``last_exit`` keeps the previous run's exit (a crash stays visible in status).
        self._pump = OutputPump(
            child.stdout,
            label=self.label,
            output=self.supervisor.output,
            partial_after=self.supervisor.options.partial_line_after,
            log=self._log,
        )

    async def _wait_exit_or_change(self) -> bool:
        """Supervise one run: True when it exited by itself, False on a change."""
        child = self._child
        assert child is not None
        waiter = asyncio.create_task(child.exited.wait())
        change = asyncio.create_task(self._change.wait())
        readiness: asyncio.Task[None] | None = None
        if self.spec.ready is not None:
            readiness = asyncio.create_task(self._become_ready())
        try:
            await asyncio.wait({waiter, change}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(change, readiness)
        if waiter.done():
            self.last_exit = child.returncode
            self.ready.clear()
            self._set(ProcessState.STOPPING)  # while its group is cleared; then _after_exit
            await self._clear_group(self.stop_signal)
            return True
        await cancel_and_wait(waiter)
        return False

    async def _become_ready(self) -> None:
        assert self.spec.ready is not None
        check = self.spec.ready
        await wait_ready(check, self._log)
        self._set(ProcessState.READY)
        self.ready.set()
        self.event(f"ready ({describe(check)})")

    # -- stopping -------------------------------------------------------------------

    async def _clear_group(self, sig: int) -> None:
        """After the leader exited: clear its group, then read the rest of its output
        and release the pipe."""
        assert self._child is not None
        await self._child.clear_group(sig, self.spec.stop_timeout)
        if self._pump is not None:
            await self._pump.finish()
            self._pump = None
        self._child.close()

    async def stop(self, sig: int) -> None:
        """Stop the running process (if any) and its whole group; return once all of it
        has exited. ``sig`` first, SIGKILL after ``stop_timeout``."""
        child = self._child
        if child is None:
            return
        if not child.running:
            # The leader is gone; what it left in its group may not be (an interrupted
            # clean-up after an exit).
            if child.group_alive():
                await self._clear_group(sig)
            return
        self._set(ProcessState.STOPPING)
        self.ready.clear()
        await child.stop_leader(sig, self.spec.stop_timeout, self.spec.term_grace)
        self.last_exit = child.returncode
        await self._clear_group(signal.SIGKILL)
        self.supervisor.changed()

    async def shutdown(self) -> None:
        """Stop for good: after the processes that depend on this one have stopped."""
        dependants = self.supervisor.dependants_of(self)
        if dependants:
            limit = max(d.spec.stop_timeout + d.spec.term_grace for d in dependants) + 6.0
            with contextlib.suppress(TimeoutError):
                await wait_timeout(asyncio.gather(*(d.finished.wait() for d in dependants)), limit)
        try:
            running = self._child is not None and self._child.running
            await self.stop(self.stop_signal)
            if running:
                self.event(f"stopped ({describe_exit(self.last_exit)})")
        finally:
            if self.state not in (ProcessState.EXITED, ProcessState.FAILED):
                self._set(ProcessState.STOPPED)
            self.finished.set()


class Supervisor:
    """Runs the processes that managers hand to `supervise`, in one event loop.

    ``session`` names the reloaders of the session: ``depends_on`` may point at their
    processes before their managers have called `supervise` (reloaders start
    concurrently); dependencies on other reloaders are ignored with a notice.
    ``expected`` (processes known in advance) only lines up the output's name column.
    """

    def __init__(
        self,
        *,
        output: Output | None = None,
        options: SupervisorOptions | None = None,
        variables: VariableHub | None = None,
        expected: Iterable[ProcessRef] = (),
        session: Iterable[str] | None = None,
        on_change: Callable[[], None] | None = None,
        marker: str | None = None,
    ) -> None:
        self.options = options or SupervisorOptions()
        #: Put in every process's environment as ``CAPRONI_TASKS_SESSION`` (see session).
        self.marker = marker
        self.output = output or Output()
        self.variables = variables
        self.on_change = on_change
        self.base_env: dict[str, str] = dict(
            self.options.base_env if self.options.base_env is not None else os.environ
        )
        self.session: set[str] | None = set(session) if session is not None else None
        self.processes: dict[ProcessRef, ManagedProcess] = {}
        self._arrived: dict[ProcessRef, asyncio.Event] = {}
        self._watch: WatchHub | None = None
        self._labels: dict[ProcessRef, str] = {}
        self.output.add_name(SUPERVISOR_LABEL)  # its own messages; keeps the column steady
        self._assign_labels(expected)

    # -- naming ---------------------------------------------------------------------

    def _assign_labels(self, refs: Iterable[ProcessRef]) -> None:
        refs = list(refs)
        counts: dict[str, int] = {}
        for ref in {*self._labels, *refs}:
            counts[ref.process] = counts.get(ref.process, 0) + 1
        for ref in refs:
            if ref not in self._labels:
                self._labels[ref] = ref.process if counts[ref.process] == 1 else str(ref)
                self.output.add_name(self._labels[ref])

    def label(self, ref: ProcessRef) -> str:
        if ref not in self._labels:
            taken = set(self._labels.values())
            self._labels[ref] = ref.process if ref.process not in taken else str(ref)
            self.output.add_name(self._labels[ref])
        return self._labels[ref]

    # -- queries --------------------------------------------------------------------

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def leader_pids(self) -> set[int]:
        """Pids of the processes started directly (asyncio reaps those)."""
        return {p.pid for p in self.processes.values() if p.pid is not None}

    def dependencies_of(self, process: ManagedProcess) -> list[ManagedProcess]:
        return [self.processes[r] for r in process.spec.depends_on if r in self.processes]

    def dependants_of(self, process: ManagedProcess) -> list[ManagedProcess]:
        return [
            p
            for p in self.processes.values()
            if process.ref in p.spec.depends_on and not p.finished.is_set()
        ]

    @property
    def watch_hub(self) -> WatchHub:
        if self._watch is None:
            from caproni_tasks.reloader.watching import WatchHub

            self._watch = WatchHub(
                step_ms=self.options.watch_step_ms,
                debounce_ms=self.options.watch_debounce_ms,
                force_polling=self.options.force_polling,
                on_error=lambda roots, exc: self.output.event(
                    SUPERVISOR_LABEL,
                    f"watching {', '.join(map(str, roots))} failed: {exc}; retrying",
                    error=True,
                ),
                on_notice=lambda message: self.output.event(SUPERVISOR_LABEL, message, error=True),
            )
        return self._watch

    # -- running --------------------------------------------------------------------

    def event(self, reloader: str, message: str, *, error: bool = False) -> None:
        """A manager's own line (setup, clean-up), labelled with its reloader."""
        self.output.add_name(reloader)
        self.output.event(reloader, message, error=error)

    async def supervise(self, reloader: str, specs: Sequence[ProcessDescription]) -> None:
        """Run ``specs`` (the processes of ``reloader``) until cancelled — or until every
        one of them has ended for good with nothing left that could restart it. On
        cancellation every process is stopped (dependants first) before this returns."""
        from caproni_tasks.reloader.globs import PathMatcher

        self._assign_labels(ProcessRef(reloader, s.name) for s in specs)
        managed = [
            ManagedProcess(self, reloader, spec, self.label(ProcessRef(reloader, spec.name)))
            for spec in specs
        ]
        subscriptions = []
        for process in managed:
            self.processes[process.ref] = process
            self._arrived.setdefault(process.ref, asyncio.Event()).set()
        for process in managed:
            if process.spec.watch:
                matcher = PathMatcher(process.spec.cwd, process.spec.watch, process.spec.ignore)
                subscriptions.append(self.watch_hub.add(matcher, process.files_changed))
            if process.spec.runtimevars and self.variables is not None:
                self.variables.subscribe(process.spec.runtimevars, process.variable_changed)
        self.changed()
        tasks = [
            asyncio.create_task(self._start(process, managed), name=f"process {process.label}")
            for process in managed
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(p.shutdown() for p in managed), return_exceptions=True)
            for watcher in subscriptions:
                self.watch_hub.remove(watcher)
            if self.variables is not None:
                for process in managed:
                    self.variables.unsubscribe(process.spec.runtimevars, process.variable_changed)
            self.changed()

    async def _start(self, process: ManagedProcess, group: Sequence[ManagedProcess]) -> None:
        await self._await_dependency_arrival(process)
        while True:
            await process.lifecycle()
            process.ended.set()
            # Until its siblings end too, `invoke restart` can start it again.
            if not await process.revived(group):
                return

    async def _await_dependency_arrival(self, process: ManagedProcess) -> None:
        """Wait until every dependency has been handed to the supervisor (reloaders start
        concurrently); dependencies that are not part of this session are ignored."""
        outside: list[str] = []
        for ref in process.spec.depends_on:
            known = ref in self.processes or (
                self.session is not None and ref.reloader in self.session
            )
            if not known:
                outside.append(str(ref))
                continue
            await self._arrived.setdefault(ref, asyncio.Event()).wait()
        if outside:
            which = "which is" if len(outside) == 1 else "which are"
            process.event(
                f"depends on {', '.join(outside)}, {which} not part of this session; not waiting"
            )

    async def wait_watching(self, timeout: float = 5.0) -> None:
        """Wait until all file watchers are live (tests and benchmarks)."""
        if self._watch is not None:
            await self._watch.wait_started(timeout)

    async def close(self) -> None:
        """Release watchers and variables (after every `supervise` has returned)."""
        if self._watch is not None:
            await self._watch.close()
            self._watch = None
