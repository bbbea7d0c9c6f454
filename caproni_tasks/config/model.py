"""caproni.yaml as frozen, typed values: what the loader produces and reloaders consume.

Paths are absolute (resolved against the config file's directory). ``${NAME}``
references to ``variables`` are already expanded; ``${runtimevar:NAME}`` references are
kept in the text and listed in ``runtimevars`` so the supervisor can substitute current
values and restart on change. ``$$`` is a literal ``$``.

So commands and env values are *templates*: run them through `render` (or
`caproni_tasks.config.expand_runtimevars`) before use, even when ``runtimevars`` is
empty, because that is also where ``$$`` becomes ``$``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RestartPolicy = Literal["always", "on-failure", "never"]


@dataclass(frozen=True)
class Location:
    """Where a value was written: 1-based line and column in ``file``."""

    file: str
    line: int
    column: int


@dataclass(frozen=True)
class ReadyCheck:
    """Exactly one of the three is set."""

    tcp: int | None = None
    http: str | None = None
    log: str | None = None  # a regular expression matched against each output line


@dataclass(frozen=True)
class ProcessRef:
    """A process of a reloader; ``depends_on`` entries resolve to these."""

    reloader: str
    process: str

    def __str__(self) -> str:
        return f"{self.reloader}.{self.process}"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    command: str  # a shell string, run with /bin/sh -c
    directory: Path  # absolute: the repository (or config) dir joined with `directory:`
    env: Mapping[str, str] = field(default_factory=dict)
    watch: tuple[str, ...] = ()  # globs relative to `directory`
    ignore: tuple[str, ...] = ()  # globs relative to `directory`
    restart: RestartPolicy = "on-failure"
    max_restarts: int = 10
    stop_signal: str = "SIGTERM"  # a signal name as in the `signal` module
    stop_timeout: float = 10.0  # seconds between stop_signal and SIGKILL
    ready: ReadyCheck | None = None
    depends_on: tuple[ProcessRef, ...] = ()
    runtimevars: frozenset[str] = frozenset()  # names used as ${runtimevar:NAME}
    location: Location | None = None
    #: dotenv files read at each start, in order (the reloader's ``env_file`` files, then
    #: the process's), absolute; a later file wins, ``env`` wins over them all.
    env_files: tuple[Path, ...] = ()

    def render(self, values: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """The command and env with runtime variables substituted and ``$$`` unescaped."""
        return _render(self.command, self.env, values)


def _render(
    command: str, env: Mapping[str, str], values: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    from caproni_tasks.config.expand import expand_runtimevars

    return (
        expand_runtimevars(command, values),
        {name: expand_runtimevars(value, values) for name, value in env.items()},
    )


@dataclass(frozen=True)
class LifecycleHook:
    """A script run before processes start: ``edit_mode_prepare`` (once, and again when
    the hooks change) or ``edit_mode_start`` (every run); see `caproni_tasks.reloader.hooks`.
    """

    type: str
    script: str  # a shell string, run with /bin/sh -c; ${NAME} already expanded
    #: Where it runs (absolute): the repository directory of the file or reloader that
    #: declares it. ``None`` means the directory the caller passes.
    directory: Path | None = None
    location: Location | None = None


#: A reloader's settings: what its kind's builder made of its section (a dataclass of
#: the kind's unit, e.g. `caproni_tasks.reloader.kinds.process.ProcessSettings`), or
#: the section as plain data for a kind that has no builder.
KindSettings = object


@dataclass(frozen=True)
class RepositorySpec:
    name: str
    directory: Path  # absolute
    repository: str | None = None  # clone URL, informational
    edit_mode: bool = False
    location: Location | None = None


@dataclass(frozen=True)
class ReloaderSpec:
    name: str
    type: str
    directory: Path  # absolute: the repository's directory, or the config's directory
    repository: str | None = None
    edit_mode: bool = False
    #: The section named after the kind, as its kind's builder typed it (plain data, a
    #: mapping of the YAML as loaded, for a kind without a builder).
    settings: KindSettings = field(default_factory=dict)
    location: Location | None = None
    #: The reloader's ``env_file`` files (absolute, in order; a later file wins):
    #: variables for every one of its processes.
    env_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class RuntimeVarSpec:
    name: str
    url: str  # as written; relative file URLs resolve against `base_dir`
    base_dir: Path
    location: Location | None = None


@dataclass(frozen=True)
class CaproniConfig:
    path: Path  # the main file, absolute
    version: int
    variables: Mapping[str, str] = field(default_factory=dict)
    repositories: Mapping[str, RepositorySpec] = field(default_factory=dict)
    reloaders: Mapping[str, ReloaderSpec] = field(default_factory=dict)  # file order
    runtimevars: Mapping[str, RuntimeVarSpec] = field(default_factory=dict)
    #: One-line notices for the user (e.g. ignored `cluster:` / `deployers:` sections).
    notices: tuple[str, ...] = ()
    #: The personal overlay (``caproni.local.yaml``) merged on top, when there was one.
    overlay: Path | None = None
    #: Top-level ``lifecycle_hooks`` of the main file, extended files, repository
    #: fragments and the overlay, in merge order, each with its directory.
    lifecycle_hooks: tuple[LifecycleHook, ...] = ()
    #: Every file merged into this config, in merge order (main, extended files,
    #: ``caproni-project.yaml`` fragments, overlay), absolute.
    files: tuple[Path, ...] = ()

    @property
    def directory(self) -> Path:
        return self.path.parent
