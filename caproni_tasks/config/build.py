"""Validated data → the frozen model, with the checks a schema cannot express.

References between parts of the file (a reloader's repository, ``depends_on``,
``${NAME}`` and ``${runtimevar:NAME}``), "exactly one readiness check" and dependency
cycles are checked here; each problem is reported at the line that holds it.
"""

from __future__ import annotations

import os
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caproni_tasks.config.expand import Reference, TemplateError, expand_variables
from caproni_tasks.config.graph import cycles
from caproni_tasks.config.model import (
    CaproniConfig,
    KindSettings,
    Location,
    ProcessRef,
    ProcessSpec,
    ReadyCheck,
    ReloaderSpec,
    RepositorySpec,
    RuntimeVarSpec,
)
from caproni_tasks.config.strict import INVALID
from caproni_tasks.config.yamldoc import Document, YamlPath
from caproni_tasks.diagnostics import Diagnostic

__all__ = ["Builder", "SectionContext"]


@dataclass
class _Pending:
    """A process whose ``depends_on`` is resolved once every reloader is known."""

    reloader: str
    name: str
    entries: list[tuple[str, YamlPath]]
    spec: ProcessSpec


@dataclass
class SectionContext:
    """What a kind's settings builder (`caproni_tasks.config.kinds.Kind.build`) may use.

    ``steps`` are keys (and list indexes) below the kind's section, e.g.
    ``ctx.error(("processes", "web", "command"), "my-code", "message")``.
    """

    builder: Builder
    reloader: str
    kind: str
    #: The reloader's directory (absolute): its repository's, else the config file's.
    directory: Path

    @property
    def path(self) -> YamlPath:
        """The section's own place in the document."""
        return ("reloaders", self.reloader, self.kind)

    def at(self, steps: YamlPath = (), *, key: bool = False) -> Location:
        """File, line and column of a value (or of its key) in the section."""
        return self.builder.at((*self.path, *steps), key=key)

    def error(self, steps: YamlPath, code: str, message: str) -> None:
        """Report an error at a value of the section (the config then fails to load)."""
        self.builder.error(self.at(steps), code, message)

    def expand(self, text: str, steps: YamlPath) -> tuple[str, frozenset[str]]:
        """``${NAME}`` expanded from ``variables``; the ``${runtimevar:NAME}`` names used
        (kept in the text: render it with `caproni_tasks.config.expand_runtimevars`)."""
        template, names = self.builder.expand(text, (*self.path, *steps))
        return template, frozenset(names)

    def env(self, raw: Any, steps: YamlPath) -> tuple[dict[str, str], frozenset[str]]:
        """An ``env:`` mapping expanded like `expand`, with the runtime variables used."""
        env, names = self.builder._env(raw, (*self.path, *steps))
        return env, frozenset(names)

    def join(self, relative: str) -> Path:
        """A path written relative to the reloader's directory, made absolute."""
        return _join(self.directory, relative)

    def ready(self, raw: Any, steps: YamlPath) -> ReadyCheck | None:
        """A ``ready:`` check (schema node `caproni_tasks.config.schema.READY`)."""
        return self.builder._ready(raw, (*self.path, *steps))

    def processes(self, raw: Any, steps: YamlPath) -> tuple[ProcessSpec, ...]:
        """The entries of a mapping of processes in the common shape (schema node
        `caproni_tasks.config.schema.PROCESS`). Their ``depends_on`` is resolved once every
        reloader is built: keep them in a ``processes`` field of the settings dataclass,
        which is then replaced with the resolved specs."""
        self.builder._declare(self.reloader, [n for n, _ in _entries(raw, True)])
        built = []
        for name, entry in _entries(raw):
            where: YamlPath = (*self.path, *steps, name)
            built.append(self.builder._process(self.reloader, name, entry, where, self.directory))
        return tuple(built)


@dataclass
class Builder:
    doc: Document
    sources: Mapping[str, str]
    path: Path
    overlay: Path | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    #: Where ``${NAME}`` looks when ``variables`` has no NAME (the loader passes the
    #: process environment, recording what it reads).
    environ: Mapping[str, str] = field(default_factory=dict)
    runtimevars: dict[str, RuntimeVarSpec] = field(default_factory=dict)
    _pending: list[_Pending] = field(default_factory=list)
    #: Reloaders whose settings describe processes (``depends_on`` may name them) and
    #: the names of those processes, invalid entries included.
    _declared: dict[str, list[str]] = field(default_factory=dict)
    #: False once a reloader of a third-party kind was built: its builder's code is not
    #: part of the cache key, so such a config is not cached.
    cacheable: bool = True
    #: Sections that failed the schema: references into them are not reported, as the
    #: schema error already was and "unknown name" would only be noise.
    _broken: set[str] = field(default_factory=set)
    #: Each reloader's ``env_file`` files (absolute, in order), for its processes.
    _reloader_env_files: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    # -- reporting ---------------------------------------------------------------

    def error(self, where: Location, code: str, message: str) -> None:
        self.diagnostics.append(
            Diagnostic.error(where.file, where.line, where.column, code, message)
        )

    def at(self, path: YamlPath, *, key: bool = False) -> Location:
        return self.doc.locate(path, key=key)

    # -- the whole file ------------------------------------------------------------

    def build(self, data: Mapping[str, Any], notices: tuple[str, ...]) -> CaproniConfig:
        base = self.path.parent
        self._broken = {key for key, value in data.items() if value is INVALID}
        self.variables = {str(k): str(v) for k, v in _entries(data.get("variables"))}
        for name, url in _entries(data.get("runtimevars")):
            self.runtimevars[name] = RuntimeVarSpec(
                name, str(url), base, self.at(("runtimevars", name), key=True)
            )
        repositories: dict[str, RepositorySpec] = {}
        known_repositories = {name for name, _ in _entries(data.get("repositories"), True)}
        for name, entry in _entries(data.get("repositories")):
            directory = _join(base, str(entry.get("directory") or name))
            repositories[name] = RepositorySpec(
                name=name,
                directory=directory,
                repository=entry.get("repository"),
                edit_mode=bool(entry.get("edit_mode", False)),
                location=self.at(("repositories", name), key=True),
            )
        reloaders: dict[str, ReloaderSpec] = {}
        raw_reloaders = dict(_entries(data.get("reloaders"), True))
        for name, entry in raw_reloaders.items():
            if entry is INVALID:
                continue
            path: YamlPath = ("reloaders", name)
            repository = entry.get("repository")
            directory = base
            if repository is not None:
                if repository in repositories:
                    directory = repositories[repository].directory
                elif repository not in known_repositories and "repositories" not in self._broken:
                    defined = ", ".join(sorted(known_repositories)) or "none"
                    self.error(
                        self.at((*path, "repository")),
                        "unknown-repository",
                        f"unknown repository '{repository}' (defined under repositories: "
                        f"{defined})",
                    )
            kind = str(entry["type"])
            env_files = _env_paths(directory, entry.get("env_file"))
            self._reloader_env_files[name] = env_files
            reloaders[name] = ReloaderSpec(
                name=name,
                type=kind,
                directory=directory,
                repository=repository,
                edit_mode=bool(entry.get("edit_mode", False)),
                settings=self._settings(name, kind, entry.get(kind, {}), directory),
                location=self.at(path, key=True),
                env_files=env_files,
            )
        reloaders = self._resolve_dependencies(reloaders, raw_reloaders)
        return CaproniConfig(
            path=self.path,
            version=version if isinstance(version := data.get("version"), int) else 2,
            variables=self.variables,
            repositories=repositories,
            reloaders=reloaders,
            runtimevars=self.runtimevars,
            notices=notices,
            overlay=self.overlay,
        )

    # -- kinds ----------------------------------------------------------------------

    def _settings(self, reloader: str, kind: str, raw: Any, directory: Path) -> KindSettings:
        """The kind's builder turns its validated section into typed settings."""
        from caproni_tasks.config.kinds import find_kind

        if raw is INVALID:
            self._broken.add(f"reloader:{reloader}")
            return {}
        found = find_kind(kind, quiet=True)
        if found is None or not found.builtin:
            self.cacheable = False
        if found is None or found.build is None:
            return dict(raw) if isinstance(raw, Mapping) else {}
        return found.build(raw, SectionContext(self, reloader, kind, directory))

    def _declare(self, reloader: str, names: list[str]) -> None:
        self._declared.setdefault(reloader, []).extend(names)

    def _process(
        self, reloader: str, name: str, entry: dict[str, Any], path: YamlPath, base: Path
    ) -> ProcessSpec:
        command, used = self.expand(str(entry["command"]), (*path, "command"))
        env, env_used = self._env(entry.get("env"), (*path, "env"))
        ready = self._ready(entry.get("ready"), (*path, "ready"))
        depends = [
            (str(item), (*path, "depends_on", i))
            for i, item in enumerate(entry.get("depends_on", ()))
        ]
        spec = ProcessSpec(
            name=name,
            command=command,
            directory=_join(base, str(entry.get("directory") or ".")),
            env=env,
            watch=tuple(entry.get("watch", ())),
            ignore=tuple(entry.get("ignore", ())),
            restart=entry.get("restart", "on-failure"),
            max_restarts=int(entry.get("max_restarts", 10)),
            stop_signal=str(entry.get("stop_signal", "SIGTERM")),
            stop_timeout=float(entry.get("stop_timeout", 10.0)),
            ready=ready,
            runtimevars=frozenset(used | env_used),
            location=self.at(path, key=True),
            env_files=self._env_files(reloader, entry.get("env_file"), base),
        )
        self._pending.append(_Pending(reloader, name, depends, spec))
        return spec

    def _env_files(self, reloader: str, own: Any, base: Path) -> tuple[Path, ...]:
        """The reloader's env files, then the process's own (relative to ``base``)."""
        return (*self._reloader_env_files.get(reloader, ()), *_env_paths(base, own))

    def _ready(self, raw: Any, path: YamlPath) -> ReadyCheck | None:
        if not raw:
            if raw == {}:
                self.error(
                    self.at(path, key=True),
                    "ready-check",
                    "ready needs exactly one of tcp: PORT, http: URL, log: REGEX",
                )
            return None
        if len(raw) > 1:
            self.error(
                self.at(path, key=True),
                "ready-check",
                f"ready takes exactly one of tcp, http, log; found {', '.join(raw)}",
            )
            return None
        return ReadyCheck(tcp=raw.get("tcp"), http=raw.get("http"), log=raw.get("log"))

    # -- ${...} ---------------------------------------------------------------------

    def _env(self, raw: Any, path: YamlPath) -> tuple[dict[str, str], set[str]]:
        env: dict[str, str] = {}
        used: set[str] = set()
        for key, value in _entries(raw):
            env[key], names = self.expand(str(value), (*path, key))
            used |= names
        return env, used

    def expand(self, text: str, path: YamlPath) -> tuple[str, set[str]]:
        """Load-time expansion of one value; problems reported at the reference."""
        try:
            template, runtime, unknown = expand_variables(
                text,
                ChainMap(self.variables, self.environ),  # type: ignore[arg-type]
            )
        except TemplateError as exc:
            self.error(self._reference_at(path, text, exc.offset, 2), "bad-reference", str(exc))
            return text, set()
        for ref in unknown if "variables" not in self._broken else ():
            known = ", ".join(sorted(self.variables)) or "none defined"
            self.error(
                self._reference_at(path, text, ref.offset, ref.length),
                "unknown-variable",
                f"unknown variable '{ref.name}' in {ref.text}: not under variables nor "
                f"in the environment (variables: {known}; write $$ for a literal $)",
            )
        names: set[str] = set()
        for ref in runtime:
            if ref.name in self.runtimevars:
                names.add(ref.name)
            elif "runtimevars" not in self._broken:
                self._unknown_runtimevar(path, text, ref)
        return template, names

    def _unknown_runtimevar(self, path: YamlPath, text: str, ref: Reference) -> None:
        known = ", ".join(sorted(self.runtimevars)) or "none defined"
        self.error(
            self._reference_at(path, text, ref.offset, ref.length),
            "unknown-runtimevar",
            f"unknown runtime variable '{ref.name}' in {ref.text}: declare it under "
            f"runtimevars: (declared: {known})",
        )

    def _reference_at(self, path: YamlPath, value: str, offset: int, length: int) -> Location:
        """The line and column of ``value[offset:]`` in the source, when it can be found."""
        start = self.at(path)
        lines = self.sources.get(start.file, "").split("\n")
        if not 0 < start.line <= len(lines):
            return start
        row = lines[start.line - 1]
        col = start.column - 1
        head = value[:offset]
        if "\n" not in head:
            for skip in (0, 1):  # plain, then quoted ('…' or "…")
                if row[col + skip : col + skip + offset] == head and (
                    skip == 0 or row[col : col + 1] in ("'", '"')
                ):
                    return Location(start.file, start.line, col + skip + offset + 1)
        needle = value[offset : offset + length]
        for number in range(start.line - 1, min(len(lines), start.line + 200)):
            found = lines[number].find(needle, col if number == start.line - 1 else 0)
            if found >= 0:
                return Location(start.file, number + 1, found + 1)
        return start

    # -- depends_on -------------------------------------------------------------------

    def _resolve_dependencies(
        self, reloaders: dict[str, ReloaderSpec], raw: Mapping[str, Any]
    ) -> dict[str, ReloaderSpec]:
        from dataclasses import fields, is_dataclass, replace

        for name, entry in raw.items():
            if entry is INVALID:
                self._broken.add(f"reloader:{name}")
        processes = self._declared
        graph: dict[ProcessRef, tuple[ProcessRef, ...]] = {}
        edge_at: dict[ProcessRef, YamlPath] = {}
        built: dict[str, dict[str, ProcessSpec]] = {name: {} for name in processes}
        for pending in self._pending:
            me = ProcessRef(pending.reloader, pending.name)
            refs: list[ProcessRef] = []
            for text, where in pending.entries:
                for ref in self._resolve(text, where, pending.reloader, processes, reloaders):
                    if ref not in refs:
                        refs.append(ref)
                        edge_at.setdefault(me, where)
            graph[me] = tuple(refs)
            resolved = replace(pending.spec, depends_on=tuple(refs))
            built.setdefault(pending.reloader, {})[pending.name] = resolved
        self._report_cycles(graph, edge_at)
        result: dict[str, ReloaderSpec] = {}
        for name, spec in reloaders.items():
            settings = spec.settings
            done = built.get(name)
            if (
                done
                and is_dataclass(settings)
                and not isinstance(settings, type)
                and any(f.name == "processes" for f in fields(settings))
            ):
                listed = settings.processes  # type: ignore[attr-defined]
                updated = tuple(
                    done.get(p.name, p) if isinstance(p, ProcessSpec) else p for p in listed
                )
                spec = replace(spec, settings=replace(settings, processes=updated))
            result[name] = spec
        return result

    def _resolve(
        self,
        text: str,
        where: YamlPath,
        mine: str,
        processes: Mapping[str, list[str]],
        reloaders: Mapping[str, ReloaderSpec],
    ) -> list[ProcessRef]:
        location = self.at(where)
        reloader, dot, process = text.partition(".")
        if f"reloader:{reloader if dot else text}" in self._broken or "reloaders" in self._broken:
            return []
        if dot:
            if reloader not in reloaders and reloader not in processes:
                self.error(
                    location,
                    "unknown-dependency",
                    f"depends_on '{text}': no reloader named '{reloader}' "
                    f"(reloaders: {', '.join(reloaders) or 'none'})",
                )
            elif reloader not in processes:
                self.error(
                    location, "unknown-dependency", self._not_process(text, reloader, reloaders)
                )
            elif process not in processes[reloader]:
                self.error(
                    location,
                    "unknown-dependency",
                    f"depends_on '{text}': reloader '{reloader}' has no process '{process}' "
                    f"(processes: {', '.join(processes[reloader]) or 'none'})",
                )
            else:
                return [ProcessRef(reloader, process)]
            return []
        if text in processes.get(mine, ()):
            return [ProcessRef(mine, text)]
        if text in processes:
            return [ProcessRef(text, p) for p in processes[text]]
        if text in reloaders:
            self.error(location, "unknown-dependency", self._not_process(text, text, reloaders))
            return []
        self.error(
            location,
            "unknown-dependency",
            f"depends_on '{text}': not a process of reloader '{mine}' "
            f"({', '.join(processes.get(mine, ())) or 'none'}) nor a reloader "
            f"({', '.join(reloaders) or 'none'}); write reloader.process for another "
            "reloader's process",
        )
        return []

    @staticmethod
    def _not_process(text: str, reloader: str, reloaders: Mapping[str, ReloaderSpec]) -> str:
        kind = reloaders[reloader].type if reloader in reloaders else "?"
        return (
            f"depends_on '{text}': reloader '{reloader}' is of type {kind}; depends_on can "
            "only name processes of reloaders of type process (or of kinds that declare "
            "their processes)"
        )

    def _report_cycles(
        self,
        graph: Mapping[ProcessRef, tuple[ProcessRef, ...]],
        edge_at: Mapping[ProcessRef, YamlPath],
    ) -> None:
        for cycle in cycles(graph):
            shown = " -> ".join(str(ref) for ref in [*cycle, cycle[0]])
            self.error(
                self.at(edge_at[cycle[0]]),
                "dependency-cycle",
                f"dependency cycle: {shown}",
            )


def _entries(raw: Any, keep_invalid: bool = False) -> list[tuple[str, Any]]:
    """``(name, value)`` pairs of a mapping section; invalid entries only on request."""
    if not isinstance(raw, Mapping):
        return []
    return [(str(k), v) for k, v in raw.items() if keep_invalid or v is not INVALID]


def _join(base: Path, relative: str) -> Path:
    return Path(os.path.normpath(base / Path(relative).expanduser()))


def _env_paths(base: Path, raw: Any) -> tuple[Path, ...]:
    """``env_file:`` as written (one path, a list of paths, or nothing) as absolute
    paths, in order."""
    if raw is None or raw == "":
        return ()
    items = raw if isinstance(raw, list | tuple) else [raw]
    return tuple(_join(base, str(item)) for item in items if str(item))
