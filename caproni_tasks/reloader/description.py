"""What a manager hands the supervisor: kind-neutral descriptions of processes.

A kind turns its settings into `ProcessDescription` values and passes them to the
narrow `ProcessHost` interface (``await host.supervise(reloader.name, descriptions)``);
it never sees the supervisor's class. The supervisor gives every description the same
care: its own process group, restarts with backoff, watching, runtime variables,
readiness, ``depends_on`` and a clean stop.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from caproni_tasks.config.model import ProcessRef, ReadyCheck, RestartPolicy

if TYPE_CHECKING:
    from caproni_tasks.config.model import ProcessSpec

__all__ = [
    "ProcessDescription",
    "ProcessHost",
    "describe_spec",
    "read_env_files",
    "start_environment",
]


@dataclass(frozen=True)
class ProcessDescription:
    """One process to supervise.

    Exactly one of ``command`` (a shell string: executed directly when it has no shell
    syntax, else run with ``/bin/sh -c``, see `caproni_tasks.reloader.shellcmd`) and
    ``argv`` (a program and its arguments, run directly) is set. Both, and env values, are
    templates: ``${runtimevar:NAME}`` is replaced by the variable's current value at
    each start (list the names in ``runtimevars``; a change restarts the process) and
    ``$$`` becomes ``$``.
    """

    name: str
    cwd: Path  # absolute
    command: str = ""
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    watch: tuple[str, ...] = ()  # globs relative to `cwd`: a change restarts the process
    ignore: tuple[str, ...] = ()  # globs relative to `cwd` that never restart it
    restart: RestartPolicy = "on-failure"
    max_restarts: int = 10  # crashes in a row after which the process is failed
    ready: ReadyCheck | None = None
    depends_on: tuple[ProcessRef, ...] = ()
    stop_signal: str = "SIGTERM"  # sent to the whole process group to stop it
    stop_timeout: float = 10.0  # seconds between the stop signal and TERM/KILL
    #: When the stop signal is not SIGTERM: seconds between a SIGTERM sent after
    #: ``stop_timeout`` and SIGKILL (0: SIGKILL straight after ``stop_timeout``).
    term_grace: float = 0.0
    runtimevars: frozenset[str] = frozenset()
    #: Exit codes meaning "this will never work as configured" (e.g. a usage error):
    #: the process is failed at once, without restarts.
    fatal_exits: frozenset[int] = frozenset()
    #: dotenv files read at each start, in order (`caproni_tasks.config.dotenv`);
    #: ``env`` wins over them.
    env_files: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.argv):
            raise ValueError(f"process {self.name}: give exactly one of command and argv")

    @property
    def shown(self) -> str:
        """The command line as a user reads it (templates not yet rendered)."""
        return self.command or shlex.join(self.argv)

    def render(
        self, values: Mapping[str, str], shell: str = "/bin/sh"
    ) -> tuple[list[str], str, dict[str, str]]:
        """The argv to execute, the command line shown, and the env, with runtime
        variables substituted and ``$$`` unescaped."""
        from caproni_tasks.config.expand import expand_runtimevars

        env = self.rendered_env(values)
        if self.command:
            from caproni_tasks.reloader.shellcmd import command_argv

            command = expand_runtimevars(self.command, values)
            return command_argv(command, shell), command, env
        argv = [expand_runtimevars(word, values) for word in self.argv]
        return argv, shlex.join(argv), env

    def rendered_env(self, values: Mapping[str, str]) -> dict[str, str]:
        """``env`` with runtime variables substituted and ``$$`` unescaped."""
        from caproni_tasks.config.expand import expand_runtimevars

        return {name: expand_runtimevars(value, values) for name, value in self.env.items()}


def read_env_files(description: ProcessDescription) -> dict[str, str]:
    """The variables of the process's ``env_files``, read now, in order (a later file
    wins); `ValueError` saying what is wrong (``file:line:col: …`` for a mistake in a
    file, ``file: reason`` for a file that cannot be read)."""
    if not description.env_files:
        return {}
    from caproni_tasks.config.dotenv import load_env_files

    try:
        return load_env_files(description.env_files)
    except OSError as exc:
        raise ValueError(f"{exc.filename}: {exc.strerror or exc}") from None


def start_environment(
    description: ProcessDescription,
    base: Mapping[str, str],
    values: Mapping[str, str],
    from_files: Mapping[str, str] | None = None,
    *,
    marker: str | None = None,
) -> dict[str, str]:
    """The environment the process starts with — what the supervisor gives it and
    ``invoke exec --process`` runs a command in: ``base``, then the variables of its
    env files (``from_files``, else read now: `ValueError` as `read_env_files`),
    ``PYTHONUNBUFFERED=1`` unless already set, then ``env`` with the runtime variables'
    ``values`` substituted, and ``marker`` as the session marker when given."""
    from caproni_tasks.reloader import proctree

    env = dict(base)
    env.update(read_env_files(description) if from_files is None else from_files)
    # Python children would block-buffer a pipe and their output would arrive late.
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(description.rendered_env(values))
    if marker is not None:
        # Inherited by every descendant: finds them however they detach.
        env[proctree.MARKER_ENV] = marker
    return env


def describe_spec(spec: ProcessSpec) -> ProcessDescription:
    """A `ProcessSpec` of the common process shape (``process`` kind) as a description."""
    return ProcessDescription(
        name=spec.name,
        cwd=spec.directory,
        command=spec.command,
        env=spec.env,
        watch=spec.watch,
        ignore=spec.ignore,
        restart=spec.restart,
        max_restarts=spec.max_restarts,
        ready=spec.ready,
        depends_on=spec.depends_on,
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout,
        runtimevars=spec.runtimevars,
        env_files=spec.env_files,
    )


@runtime_checkable
class ProcessHost(Protocol):
    """The supervisor as a manager sees it."""

    async def supervise(self, reloader: str, processes: Sequence[ProcessDescription]) -> None:
        """Run ``processes`` (of ``reloader``) until cancelled, or until each has ended
        for good; on cancellation every one is stopped before this returns."""
        ...

    def event(self, reloader: str, message: str, *, error: bool = False) -> None:
        """A line of the manager's own (setup, clean-up) in the session's output."""
        ...
