"""The shape of caproni.yaml (Caproni v2 plus ``runtimevars``).

This is the single source of truth: the loader validates with it (through strictyaml)
and ``invoke schema`` publishes it as JSON Schema. Each kind's section is described by
the kind itself (`caproni_tasks.config.kinds`); the nodes below that several kinds share
(`PROCESS`, `ENV`, `COMMAND`, `READY`…) are exported for them.
"""

from __future__ import annotations

from caproni_tasks.config.expand import NAME_PATTERN
from caproni_tasks.config.spec import (
    Boolean,
    Choice,
    Data,
    Duration,
    Field,
    HttpUrl,
    Integer,
    ListOf,
    MapOf,
    OneOrList,
    Pattern,
    Reloader,
    SignalName,
    Struct,
    Text,
    Version,
)

__all__ = [
    "COMMAND",
    "ENTRY_NAME",
    "ENV",
    "ENV_FILE",
    "EXTENDS",
    "GLOBS",
    "HOOK_TYPES",
    "IGNORED_KEYS",
    "LIFECYCLE_HOOKS",
    "PROCESS",
    "READY",
    "RESTART_POLICIES",
    "ROOT",
]

RESTART_POLICIES = ("always", "on-failure", "never")

#: Top-level keys of real Caproni files that belong to cluster management: accepted,
#: ignored, and mentioned once in a notice.
IGNORED_KEYS = ("cluster", "deployers")

#: Lifecycle hook types (see `caproni_tasks.reloader.hooks`).
HOOK_TYPES = ("edit_mode_prepare", "edit_mode_start")

LIFECYCLE_HOOKS = ListOf(
    Struct(
        {
            "type": Field(
                Choice(
                    HOOK_TYPES,
                    description="edit_mode_prepare: before the first start and whenever the "
                    "hooks change (or with invoke run --prepare); edit_mode_start: before "
                    "the processes start, every run.",
                ),
                required=True,
            ),
            "script": Field(
                Text(
                    nonempty=True,
                    description="Shell command (/bin/sh -c) run in the repository directory; "
                    "${NAME} expands a variable.",
                ),
                required=True,
            ),
        }
    ),
    description="Scripts run before the processes start, in order.",
)

EXTENDS = ListOf(
    Text(nonempty=True),
    description="Files merged before this one, in order; paths relative to this file.",
)

ENTRY_NAME = Text(
    pattern=r"[A-Za-z0-9_][A-Za-z0-9_-]*",
    pattern_hint="a name of letters, digits, '_' and '-' (a '.' would be ambiguous in depends_on)",
)
VARIABLE_NAME = Text(
    pattern=NAME_PATTERN,
    pattern_hint="a name of letters, digits and '_', not starting with a digit",
)
ENV_NAME = Text(
    pattern=r"[^=\x00]+",
    pattern_hint="an environment variable name (no '=')",
)
SCALAR_VALUE = Text(any_scalar=True)
COMMAND = Text(
    nonempty=True,
    description="Shell command (run with /bin/sh -c). ${NAME} expands a variable, "
    "${runtimevar:NAME} a runtime variable's current value; $$ is a literal $.",
)
ENV = MapOf(
    key=ENV_NAME,
    value=SCALAR_VALUE,
    description="Environment variables added to the process's environment; values expand "
    "${NAME} and ${runtimevar:NAME} like the command.",
)
ENV_FILE = OneOrList(
    Text(nonempty=True, description="A dotenv file, relative to the reloader's directory."),
    description="A dotenv file (KEY=VALUE lines, quotes, # comments, export prefix), or a "
    "list of them applied in order (a later file wins), relative to the reloader's "
    "directory, read at each start; env: wins over them.",
)
GLOBS = ListOf(Text(nonempty=True), description="Glob patterns relative to the directory.")

READY = Struct(
    {
        "tcp": Field(
            Integer(1, 65535, description="Ready once this port on localhost accepts connections.")
        ),
        "http": Field(HttpUrl(description="Ready once a GET of this URL answers 2xx or 3xx.")),
        "log": Field(
            Pattern(description="Ready once an output line matches this regular expression.")
        ),
    },
    exactly_one=True,
    description="Readiness check: exactly one of tcp, http, log.",
)

PROCESS = Struct(
    {
        "command": Field(COMMAND, required=True),
        "directory": Field(
            Text(description="Working directory, relative to the reloader's directory."),
            default=".",
        ),
        "env": Field(ENV),
        "env_file": Field(ENV_FILE),
        "watch": Field(GLOBS, description="Restart when a file matching one of these changes."),
        "ignore": Field(GLOBS, description="Changes to files matching these never restart."),
        "restart": Field(
            Choice(
                RESTART_POLICIES,
                description="When an exited process is started again.",
            ),
            default="on-failure",
        ),
        "max_restarts": Field(
            Integer(0, description="Restarts after which the process is reported failed."),
            default=10,
        ),
        "stop_signal": Field(
            SignalName(description="Signal that asks the process group to stop (TERM, INT…)."),
            default="SIGTERM",
        ),
        "stop_timeout": Field(
            Duration(
                description="Seconds (10, 2.5) or a duration (500ms, 10s, 1m) between the "
                "stop signal and SIGKILL."
            ),
            default=10,
        ),
        "ready": Field(READY),
        "depends_on": Field(
            ListOf(
                Text(nonempty=True),
                description="Processes started (and ready) before this one: a process of "
                "the same reloader, a reloader (all its processes) or reloader.process.",
            )
        ),
    },
    description="A local process supervised with restarts and reloads.",
)

RELOADER = Reloader(
    {
        "type": Field(
            Text(
                pattern=r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
                pattern_hint="a kind name such as process, mirror or skaffold",
                description="The kind: process, mirror, skaffold, or a registered third-party one.",
            ),
            required=True,
        ),
        "repository": Field(
            Text(
                nonempty=True,
                description="A repository of repositories:; its directory is the reloader's "
                "(default: the config file's directory).",
            )
        ),
        "edit_mode": Field(Boolean(), default=False),
        "env_file": Field(
            ENV_FILE,
            description="A dotenv file, or a list of them applied in order (a later file "
            "wins), relative to the reloader's directory, whose variables every process of "
            "the reloader gets (its own env_file and env win).",
        ),
    },
    description="A reloader: type, repository and a section named after the type.",
)

REPOSITORY = Struct(
    {
        "repository": Field(Text(nonempty=True, description="Clone URL (informational).")),
        "directory": Field(
            Text(
                nonempty=True,
                description="Where it is checked out, relative to the config file "
                "(default: the repository's name).",
            )
        ),
        "edit_mode": Field(Boolean(), default=False),
    }
)

RUNTIMEVAR_URL = Text(
    pattern=r"(runtimevar\+)?[A-Za-z][A-Za-z0-9+.-]*://.*",
    pattern_hint="a URL with a scheme, e.g. file://./vars/port.txt?decoder=string",
    description="Runtime variable URL; relative file paths resolve against the config's directory.",
)

ROOT = Struct(
    {
        "version": Field(Version(description="Config format version: 2."), required=True),
        "variables": Field(
            MapOf(
                key=VARIABLE_NAME,
                value=SCALAR_VALUE,
                description="Plain strings substituted as ${NAME} in commands and env.",
            )
        ),
        "repositories": Field(MapOf(key=ENTRY_NAME, value=REPOSITORY, isolate=True)),
        "reloaders": Field(MapOf(key=ENTRY_NAME, value=RELOADER, isolate=True)),
        "runtimevars": Field(
            MapOf(
                key=VARIABLE_NAME,
                value=RUNTIMEVAR_URL,
                description="Runtime variables (name → URL) usable as ${runtimevar:NAME}.",
            )
        ),
        "extends": Field(EXTENDS),
        "lifecycle_hooks": Field(LIFECYCLE_HOOKS),
        **{
            key: Field(Data(mapping=False, description="Cluster management: accepted, ignored."))
            for key in IGNORED_KEYS
        },
    },
    description="caproni.yaml: the reloaders of a development environment (Caproni v2).",
)
