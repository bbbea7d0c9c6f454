"""The ``skaffold`` kind: ``skaffold dev`` in a repository, supervised.

The worked example of docs/reloaders.md, "Writing a kind": the section's schema, the
typed settings and their builder, and the manager, registered together as one `Kind`.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caproni_tasks.config.kinds import Kind, register_kind
from caproni_tasks.config.schema import ENV
from caproni_tasks.config.spec import Boolean, Choice, Duration, Field, ListOf, Struct, Text
from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.reloader.contract import RunFailedError, State, Status, StatusFailedError
from caproni_tasks.reloader.description import ProcessDescription
from caproni_tasks.reloader.kinds.common import not_cloned
from caproni_tasks.reloader.tools import find_tool, missing_tool_message
from caproni_tasks.reloader.validation import place

if TYPE_CHECKING:
    from caproni_tasks.config.build import SectionContext
    from caproni_tasks.config.model import CaproniConfig, ReloaderSpec
    from caproni_tasks.reloader.description import ProcessHost

__all__ = [
    "KIND",
    "PORT_FORWARD_MODES",
    "SECTION",
    "SkaffoldManager",
    "SkaffoldSettings",
    "build_settings",
    "dev_argv",
]

NAME = "skaffold"

#: ``--port-forward`` modes; several may be combined with commas, except ``off``.
PORT_FORWARD_MODES = ("user", "services", "debug", "pods", "off")
_COMBINABLE = "(user|services|debug|pods)"

SECTION = Struct(
    {
        "file": Field(
            Text(nonempty=True, description="The skaffold config, relative to the repository."),
            default="skaffold.yaml",
        ),
        "profiles": Field(
            ListOf(Text(nonempty=True), description="Profiles to activate (-p), in order.")
        ),
        "modules": Field(
            ListOf(Text(nonempty=True), description="Named configs to run (-m), in order.")
        ),
        "kube_context": Field(Text(nonempty=True, description="--kube-context")),
        "namespace": Field(Text(nonempty=True, description="-n: the namespace to deploy to.")),
        "port_forward": Field(
            Text(
                pattern=f"{_COMBINABLE}(,{_COMBINABLE})*|off",
                pattern_hint="user, services, debug, pods (comma-combined, e.g. "
                "user,services) or off",
                description="--port-forward mode(s): user, services, debug, pods "
                "(comma-combined) or off.",
            ),
            default="user",
        ),
        "cleanup": Field(
            Boolean(description="--cleanup: delete what was deployed when stopped."),
            default=True,
        ),
        "status_check": Field(
            Boolean(description="--status-check: wait for deployed resources to stabilise."),
            default=True,
        ),
        "trigger": Field(
            Choice(
                ("notify", "polling", "manual"),
                description="--trigger: how skaffold notices changes (its default: notify).",
            )
        ),
        "env": Field(ENV),
        "args": Field(
            ListOf(
                Text(nonempty=True),
                description="Extra arguments of skaffold dev, appended as written "
                "(e.g. --skip-tests, -v=info).",
            )
        ),
        "stop_timeout": Field(
            Duration(
                description="Time skaffold gets to clean up after SIGINT before it is "
                "terminated (seconds or a duration such as 2m)."
            ),
            default=60,
        ),
    },
    description="Settings of a reloader of type skaffold (arguments of skaffold dev).",
)


@dataclass(frozen=True)
class SkaffoldSettings:
    """The ``skaffold:`` section: arguments of ``skaffold dev``."""

    file: str = "skaffold.yaml"
    profiles: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    kube_context: str | None = None
    namespace: str | None = None
    port_forward: str = "user"
    cleanup: bool = True
    status_check: bool = True
    trigger: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    stop_timeout: float = 60.0
    runtimevars: frozenset[str] = frozenset()  # names used as ${runtimevar:NAME}


def build_settings(section: Mapping[str, Any], ctx: SectionContext) -> SkaffoldSettings:
    env, used = ctx.env(section.get("env"), ("env",))
    args = []
    for index, arg in enumerate(section.get("args") or ()):
        text, names = ctx.expand(str(arg), ("args", index))
        args.append(text)
        used |= names
    return SkaffoldSettings(
        file=str(section.get("file", "skaffold.yaml")),
        profiles=tuple(section.get("profiles") or ()),
        modules=tuple(section.get("modules") or ()),
        kube_context=section.get("kube_context"),
        namespace=section.get("namespace"),
        port_forward=str(section.get("port_forward", "user")),
        cleanup=bool(section.get("cleanup", True)),
        status_check=bool(section.get("status_check", True)),
        trigger=section.get("trigger"),
        env=env,
        args=tuple(args),
        stop_timeout=float(section.get("stop_timeout", 60.0)),
        runtimevars=used,
    )


# -- running -----------------------------------------------------------------------------

#: The one process of a skaffold reloader, as its output is labelled.
PROCESS_NAME = "skaffold"
#: skaffold's exit status for a command-line usage error (cobra): restarting cannot help.
USAGE_ERROR_EXIT = 127
#: After ``stop_timeout`` (SIGINT given), SIGTERM gets this long before SIGKILL.
TERM_GRACE = 5.0
#: ``skaffold diagnose`` gets this long in ``invoke status``.
DIAGNOSE_TIMEOUT = 60.0


def _literal(text: str) -> str:
    """A value that must reach skaffold as written (``$`` is not a template here)."""
    return text.replace("$", "$$")


def _selection_flags(settings: SkaffoldSettings) -> list[str]:
    flags = ["-f", _literal(settings.file)]
    for profile in settings.profiles:
        flags += ["-p", _literal(profile)]
    for module in settings.modules:
        flags += ["-m", _literal(module)]
    return flags


def dev_argv(settings: SkaffoldSettings, program: str = "skaffold") -> list[str]:
    """``skaffold dev …`` for these settings, as argv templates (``$$`` is a literal
    ``$``; ``args`` and env may use ``${runtimevar:NAME}``)."""
    argv = [_literal(program), "dev", *_selection_flags(settings)]
    if settings.kube_context:
        argv += ["--kube-context", _literal(settings.kube_context)]
    if settings.namespace:
        argv += ["-n", _literal(settings.namespace)]
    argv += [
        f"--port-forward={settings.port_forward}",
        f"--cleanup={str(settings.cleanup).lower()}",
        f"--status-check={str(settings.status_check).lower()}",
        "--tail=true",
    ]
    if settings.trigger:
        argv.append(f"--trigger={settings.trigger}")
    return [*argv, *settings.args]


def _settings(reloader: ReloaderSpec) -> SkaffoldSettings:
    if isinstance(reloader.settings, SkaffoldSettings):
        return reloader.settings
    return SkaffoldSettings()  # a section without settings: every default


class SkaffoldManager:
    """The `Manager` of kind ``skaffold``: one ``skaffold dev`` per reloader."""

    @property
    def type(self) -> str:
        return NAME

    async def run(self, reloader: ReloaderSpec, config: CaproniConfig, host: ProcessHost) -> None:
        settings = _settings(reloader)
        if not reloader.directory.is_dir():
            raise RunFailedError(f"reloader {reloader.name}: {not_cloned(reloader)}")
        program = find_tool("skaffold")
        if program is None:
            raise RunFailedError(f"reloader {reloader.name}: {missing_tool_message('skaffold')}")
        file = reloader.directory / settings.file
        if not file.is_file():
            raise RunFailedError(f"reloader {reloader.name}: no skaffold config {file}")
        process = ProcessDescription(
            name=PROCESS_NAME,
            cwd=reloader.directory,
            argv=tuple(dev_argv(settings, program)),
            env=settings.env,
            restart="on-failure",
            # SIGINT lets skaffold delete what it deployed; it gets stop_timeout for it.
            stop_signal="SIGINT",
            stop_timeout=settings.stop_timeout,
            term_grace=TERM_GRACE,
            runtimevars=settings.runtimevars,
            fatal_exits=frozenset({USAGE_ERROR_EXIT}),
            env_files=reloader.env_files,
        )
        await host.supervise(reloader.name, [process])

    def status(self, reloader: ReloaderSpec, config: CaproniConfig) -> Status:
        settings = _settings(reloader)
        if not reloader.directory.is_dir():
            return Status(State.NOT_READY, (not_cloned(reloader),))
        reasons = []
        program = find_tool("skaffold")
        if program is None:
            reasons.append(missing_tool_message("skaffold"))
        file = reloader.directory / settings.file
        if not file.is_file():
            reasons.append(f"no skaffold config: {file} does not exist")
        if program is None or reasons:
            return Status(State.NOT_READY, tuple(reasons))
        try:
            done = subprocess.run(
                [program, "diagnose", "--yaml-only", *self._diagnose_flags(settings)],
                cwd=reloader.directory,
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                timeout=DIAGNOSE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StatusFailedError(
                f"skaffold diagnose did not answer within {DIAGNOSE_TIMEOUT:g}s"
            ) from exc
        except OSError as exc:
            raise StatusFailedError(f"cannot run {program}: {exc}") from exc
        if done.returncode != 0:
            return Status(State.FAILED, (f"skaffold diagnose: {_first_error(done)}",))
        return Status(State.READY)

    @staticmethod
    def _diagnose_flags(settings: SkaffoldSettings) -> list[str]:
        flags = [settings.file]
        for profile in settings.profiles:
            flags += ["-p", profile]
        for module in settings.modules:
            flags += ["-m", module]
        return ["-f", *flags]

    def validate(self, reloader: ReloaderSpec, config: CaproniConfig) -> list[Diagnostic]:
        # Inside a repository that is not cloned yet nothing can be checked.
        if not reloader.directory.is_dir():
            return []
        settings = _settings(reloader)
        at = place(config, reloader.location)
        file = reloader.directory / settings.file
        problems = check_skaffold_file(file, settings)
        return [
            Diagnostic.error(*at, code, f"{reloader.name}: {message}")
            if severity == "error"
            else Diagnostic.warning(*at, code, f"{reloader.name}: {message}")
            for severity, code, message in problems
        ]


def _first_error(done: subprocess.CompletedProcess[str]) -> str:
    for text in (done.stderr, done.stdout):
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return f"exit {done.returncode}"


# -- checking the skaffold file ----------------------------------------------------------

#: The newest config version; its JSON Schema is vendored (see skaffold_schema/README.md).
NEWEST_VERSION = "skaffold/v4beta14"
_API_VERSION = re.compile(r"skaffold/v[0-9][0-9a-z]*")
#: Schema problems reported per file, at most (the first ones say enough).
MAX_SCHEMA_PROBLEMS = 5

Problem = tuple[str, str, str]  # severity, code, message


def check_skaffold_file(file: Path, settings: SkaffoldSettings) -> list[Problem]:
    """What is wrong with a skaffold config for these settings, without running it."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [("error", "skaffold-file", f"no skaffold config: {file} does not exist")]
    except (OSError, UnicodeDecodeError) as exc:
        return [("error", "skaffold-file", f"cannot read {file}: {exc}")]
    try:
        documents = _load_all(text)
    except Exception as exc:  # the YAML library's own errors: one line, located by it
        first = str(exc).strip().splitlines()
        return [("error", "skaffold-yaml", f"{file} is not valid YAML: {' '.join(first[:3])}")]
    problems: list[Problem] = []
    profiles: set[str] = set()
    modules: set[str] = set()
    requires = False
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        where = f"{file}" + (f" (document {index + 1})" if len(documents) > 1 else "")
        if not isinstance(doc, dict):
            problems.append(("error", "skaffold-config", f"{where}: expected a mapping"))
            continue
        version = doc.get("apiVersion")
        if not isinstance(version, str) or not _API_VERSION.fullmatch(version):
            problems.append(
                (
                    "error",
                    "skaffold-config",
                    f"{where}: apiVersion must be skaffold/v… (e.g. {NEWEST_VERSION}); "
                    f"found {version!r}",
                )
            )
        if doc.get("kind") != "Config":
            problems.append(
                (
                    "error",
                    "skaffold-config",
                    f"{where}: kind must be Config; found {doc.get('kind')!r}",
                )
            )
        requires = requires or bool(doc.get("requires"))
        for profile in doc.get("profiles") or ():
            if isinstance(profile, dict) and isinstance(profile.get("name"), str):
                profiles.add(profile["name"])
        metadata = doc.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
            modules.add(metadata["name"])
        if version == NEWEST_VERSION:
            problems += _schema_problems(doc, where)
    # Profiles and modules may also come from configs this one requires: then a name
    # not found here is only a warning.
    severity = "warning" if requires else "error"
    for profile in settings.profiles:
        name = profile.removeprefix("-")  # "-name" deactivates a profile
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            problems.append(
                (severity, "skaffold-profile", f"profile {name!r} is not in {file} ({known})")
            )
    for module in settings.modules:
        if module not in modules:
            known = ", ".join(sorted(modules)) or "none: name configs with metadata.name"
            problems.append(
                (severity, "skaffold-module", f"module {module!r} is not in {file} ({known})")
            )
    return problems


def _load_all(text: str) -> list[Any]:
    from strictyaml.ruamel import YAML

    return list(YAML(typ="safe", pure=True).load_all(text))


def _schema_problems(doc: Mapping[str, Any], where: str) -> list[Problem]:
    """The document against skaffold's published JSON Schema of the newest version
    (only when the ``jsonschema`` package is installed: it is optional)."""
    import importlib

    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        return []
    validator = jsonschema.Draft7Validator(_newest_schema())
    found: list[Problem] = []
    errors = sorted(
        (_deepest(error) for error in validator.iter_errors(doc)),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    for error in errors[:MAX_SCHEMA_PROBLEMS]:
        path = ".".join(str(step) for step in error.absolute_path) or "(top level)"
        found.append(
            (
                "error",
                "skaffold-schema",
                f"{where}: {path}: {_short(error.message)} ({NEWEST_VERSION} schema)",
            )
        )
    if len(errors) > MAX_SCHEMA_PROBLEMS:
        found.append(
            (
                "error",
                "skaffold-schema",
                f"{where}: and {len(errors) - MAX_SCHEMA_PROBLEMS} more schema problems",
            )
        )
    return found


def _deepest(error: Any) -> Any:
    """The most specific cause of a schema error: skaffold's schema wraps every object
    in ``anyOf`` alternatives, whose own message ("not valid under any of the given
    schemas") says little."""
    while error.context:
        error = max(
            error.context,
            key=lambda c: (len(c.absolute_path), c.validator not in ("anyOf", "oneOf")),
        )
    return error


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


@functools.cache
def _newest_schema() -> dict[str, Any]:
    path = Path(__file__).with_name("skaffold_schema") / "v4beta14.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


KIND = register_kind(
    Kind(
        NAME,
        manager=SkaffoldManager,
        section=SECTION,
        build=build_settings,
        process_names=lambda settings: ["skaffold"],
        description="`skaffold dev`",
        builtin=True,
    )
)
