"""The ``process`` kind: a repository's development commands as local processes, with
the supervisor's restarts, watching, readiness and clean shutdown; no cluster needed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caproni_tasks.config.kinds import Kind, register_kind
from caproni_tasks.config.model import ProcessSpec
from caproni_tasks.config.schema import ENTRY_NAME, PROCESS
from caproni_tasks.config.spec import Field, MapOf, Struct
from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.reloader.contract import RunFailedError, State, Status
from caproni_tasks.reloader.description import describe_spec
from caproni_tasks.reloader.kinds.common import (
    failed_in_session,
    not_cloned,
    section_diagnostics,
    settings_for_run,
    settings_for_status,
    settings_of,
)
from caproni_tasks.reloader.validation import place

if TYPE_CHECKING:
    from caproni_tasks.config.build import SectionContext
    from caproni_tasks.config.model import CaproniConfig, ReloaderSpec
    from caproni_tasks.reloader.description import ProcessHost

__all__ = ["KIND", "SECTION", "ProcessManager", "ProcessSettings", "command_executable"]

NAME = "process"

SECTION = Struct(
    {"processes": Field(MapOf(key=ENTRY_NAME, value=PROCESS, isolate=True), required=True)},
    description="Settings of a reloader of type process.",
)


@dataclass(frozen=True)
class ProcessSettings:
    """The ``process:`` section of a reloader of kind ``process``."""

    processes: tuple[ProcessSpec, ...]


def build_settings(section: Mapping[str, Any], ctx: SectionContext) -> ProcessSettings:
    return ProcessSettings(processes=ctx.processes(section.get("processes"), ("processes",)))


#: Words a command may start with that are not programs to look up on PATH.
_SHELL_WORDS = frozenset(
    (
        ".",
        ":",
        "[",
        "[[",
        "{",
        "(",
        "!",
        "alias",
        "bg",
        "break",
        "builtin",
        "cd",
        "command",
        "continue",
        "echo",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fg",
        "for",
        "function",
        "getopts",
        "hash",
        "if",
        "jobs",
        "kill",
        "let",
        "local",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "source",
        "test",
        "time",
        "times",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "until",
        "wait",
        "while",
        "case",
        "select",
    )
)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def command_executable(command: str) -> str | None:
    """The program a shell command runs first (``exec``/``command`` and leading
    ``VAR=value`` assignments skipped), or None when a static look cannot tell."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    while words:
        word = words[0]
        if _ASSIGNMENT.match(word) or word in ("exec", "command", "nohup", "env"):
            words = words[1:]
            continue
        if "$" in word or "`" in word or word in _SHELL_WORDS:
            return None
        return word
    return None


def find_executable(program: str, directory: Path, env_path: str | None = None) -> bool:
    if "/" in program:
        candidate = Path(program) if os.path.isabs(program) else directory / program
        return candidate.is_file() and os.access(candidate, os.X_OK)
    search = env_path if env_path is not None else os.environ.get("PATH", os.defpath)
    return shutil.which(program, path=search) is not None


class ProcessManager:
    """The `Manager` of kind ``process``."""

    @property
    def type(self) -> str:
        return NAME

    async def run(self, reloader: ReloaderSpec, config: CaproniConfig, host: ProcessHost) -> None:
        settings = settings_for_run(reloader, ProcessSettings, NAME)
        for spec in settings.processes:
            if not spec.directory.is_dir():
                raise RunFailedError(
                    f"process {reloader.name}.{spec.name}: directory {spec.directory} "
                    "does not exist"
                )
        await host.supervise(reloader.name, [describe_spec(p) for p in settings.processes])

    def status(self, reloader: ReloaderSpec, config: CaproniConfig) -> Status:
        settings = settings_for_status(reloader, ProcessSettings, NAME)
        if not reloader.directory.is_dir():
            return Status(State.NOT_READY, (not_cloned(reloader),))
        reasons: list[str] = []
        for spec in settings.processes:
            reasons.extend(self._process_problems(spec))
        if reasons:
            return Status(State.NOT_READY, tuple(reasons))
        failed = self._failed_in_session(reloader, config)
        if failed:
            return Status(State.FAILED, tuple(failed))
        return Status(State.READY)

    @staticmethod
    def _process_problems(spec: ProcessSpec) -> list[str]:
        if not spec.directory.is_dir():
            return [f"{spec.name}: directory {spec.directory} does not exist"]
        program = command_executable(spec.command)
        if program is None:
            return []
        if not find_executable(program, spec.directory, spec.env.get("PATH")):
            return [f"{spec.name}: {program} not found on PATH"]
        return []

    @staticmethod
    def _failed_in_session(reloader: ReloaderSpec, config: CaproniConfig) -> list[str]:
        """Why processes of the running session are `failed`, one line each."""
        return [
            f"{p.name} exhausted its restarts"
            if p.started_at is not None
            else f"{p.name} did not start: a dependency failed"
            for p in failed_in_session(reloader, config)
        ]

    def validate(self, reloader: ReloaderSpec, config: CaproniConfig) -> list[Diagnostic]:
        from caproni_tasks.reloader.proctree import signal_number

        settings = settings_of(reloader, ProcessSettings)
        found = section_diagnostics(
            reloader,
            config,
            settings.processes if settings else None,
            kind=NAME,
            needs="`processes:`",
            none="processes",
        )
        if settings is None:
            return found
        cloned = reloader.directory.is_dir()
        for spec in settings.processes:
            at = place(config, spec.location, reloader.location)
            try:
                signal_number(spec.stop_signal)
            except ValueError:
                found.append(
                    Diagnostic.error(
                        *at,
                        "process-stop-signal",
                        f"{spec.name}: unknown stop_signal {spec.stop_signal!r} "
                        "(use a name such as SIGTERM, SIGINT, SIGQUIT)",
                    )
                )
            if spec.ready is not None and spec.ready.log is not None:
                try:
                    re.compile(spec.ready.log)
                except re.error as exc:
                    found.append(
                        Diagnostic.error(
                            *at,
                            "process-ready-log",
                            f"{spec.name}: ready.log is not a valid regular expression: {exc}",
                        )
                    )
            for pattern in (*spec.watch, *spec.ignore):
                if pattern.startswith(("/", "../")) or "/../" in pattern:
                    found.append(
                        Diagnostic.warning(
                            *at,
                            "process-watch-outside",
                            f"{spec.name}: glob {pattern!r} points outside the process "
                            "directory and never matches; globs are relative to it",
                        )
                    )
            # Inside a repository that is not cloned yet nothing can be checked.
            if cloned:
                if not spec.directory.is_dir():
                    found.append(
                        Diagnostic.error(
                            *at,
                            "process-directory",
                            f"{spec.name}: directory {spec.directory} does not exist",
                        )
                    )
                else:
                    program = command_executable(spec.command)
                    if program is not None and not find_executable(
                        program, spec.directory, spec.env.get("PATH")
                    ):
                        found.append(
                            Diagnostic.warning(
                                *at,
                                "process-executable",
                                f"{spec.name}: {program!r} is not on PATH or in the "
                                "directory (install it, e.g. through the ensure file)",
                            )
                        )
        return found


KIND = register_kind(
    Kind(
        NAME,
        manager=ProcessManager,
        section=SECTION,
        build=build_settings,
        process_names=lambda settings: [p.name for p in settings.processes],
        description="local processes, supervised (no cluster needed)",
        builtin=True,
    )
)
