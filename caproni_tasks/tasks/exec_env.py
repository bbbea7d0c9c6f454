"""``invoke exec -- CMD…``: a command in the project's environment, like ``mise exec``
or ``honcho run``: the ensure root's ``bin/`` first on PATH, the config's ``variables``
and the reloaders' ``env_file`` variables in the environment; with ``--process NAME``,
exactly the environment ``invoke run`` starts that process with (one function,
`caproni_tasks.reloader.description.start_environment`, makes both). The command
replaces this process (``execvpe``), so its exit code and signals are the caller's."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from caproni_tasks.tasks._common import fail, setting_path

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig
    from caproni_tasks.reloader.description import ProcessDescription

#: Longest wait for a runtime variable's first state (a file is read at once).
_VALUE_TIMEOUT = 10.0

CONFIG_HELP = "The config (default: the `caproni.config` setting, else caproni.yaml)."


def _command(c: Context) -> list[str]:
    """The words after ``--``: from ``sys.argv`` when it holds them (quoting kept), else
    split from invoke's remainder (a program run from Python)."""
    remainder = getattr(c, "remainder", "") or ""
    argv = sys.argv
    if "--" in argv:
        after = argv[argv.index("--") + 1 :]
        if " ".join(after) == remainder:
            return after
    try:
        return shlex.split(remainder)
    except ValueError as exc:
        fail(f"exec: cannot split the command: {exc}", 2)


def exec_environment(
    config: CaproniConfig, base: dict[str, str], process: str | None = None
) -> dict[str, str]:
    """Without ``process``: ``base`` with the config's variables, then every reloader's
    ``env_file`` files (file order; a later file wins). With ``process`` (a process,
    ``reloader.process``, or a reloader): exactly the environment the supervisor starts
    that process with (`caproni_tasks.reloader.description.start_environment`).
    `ValueError` says what is wrong."""
    if process is not None:
        from caproni_tasks.reloader.description import start_environment

        description = _find_process(config, process)
        values = _current_values(config, description.runtimevars)
        return start_environment(description, base, values)
    from caproni_tasks.config.dotenv import load_env_files

    env = dict(base)
    env.update(config.variables)
    files = [path for r in config.reloaders.values() for path in r.env_files]
    try:
        env.update(load_env_files(dict.fromkeys(files)))
    except OSError as exc:
        raise ValueError(f"env_file {exc.filename}: {exc.strerror or exc}") from None
    return env


def _find_process(config: CaproniConfig, name: str) -> ProcessDescription:
    """The description the supervisor would get for ``name``: ``reloader.process``, a
    process name unique across the reloaders, or a reloader (its one process; with
    several, what every one of them gets: the reloader's env files)."""
    from caproni_tasks.config.model import ProcessSpec
    from caproni_tasks.reloader.description import ProcessDescription, describe_spec

    processes: dict[tuple[str, str], ProcessSpec] = {}
    for reloader in config.reloaders.values():
        listed = getattr(reloader.settings, "processes", ())
        for spec in listed if isinstance(listed, tuple) else ():
            if isinstance(spec, ProcessSpec):
                processes[(reloader.name, spec.name)] = spec
    reloader_name, dot, process_name = name.partition(".")
    if dot:
        wanted = [processes[key]] if (key := (reloader_name, process_name)) in processes else []
    else:
        matches = [key for key in processes if key[1] == name]
        if len(matches) > 1:
            choices = ", ".join(f"{r}.{p}" for r, p in matches)
            raise ValueError(f"process {name!r} is in several reloaders: name one of {choices}")
        wanted = [processes[key] for key in matches]
        if not wanted and name in config.reloaders:
            own = [spec for (r, _), spec in processes.items() if r == name]
            if len(own) == 1:
                wanted = own
            else:
                reloader = config.reloaders[name]
                return ProcessDescription(
                    name=name, cwd=reloader.directory, argv=("true",), env_files=reloader.env_files
                )
    if not wanted:
        known = ", ".join(f"{r}.{p}" for r, p in processes) or "none"
        raise ValueError(f"no process {name!r} in the config (processes: {known})")
    return describe_spec(wanted[0])


def _current_values(config: CaproniConfig, names: frozenset[str]) -> dict[str, str]:
    """The current text of each runtime variable of ``names``, as the supervisor
    substitutes it; `ValueError` for one that has no good value now."""
    if not names:
        return {}
    from caproni_tasks.reloader.variables import value_text
    from caproni_tasks.runtimevar import VariableError, open_variable

    values: dict[str, str] = {}
    for name in sorted(names):
        spec = config.runtimevars[name]
        try:
            variable = open_variable(spec.url, base_dir=spec.base_dir)
        except (VariableError, OSError) as exc:
            raise ValueError(f"runtime variable {name}: cannot open {spec.url}: {exc}") from None
        try:
            values[name] = value_text(variable.watch(timeout=_VALUE_TIMEOUT).value)
        except VariableError as exc:
            raise ValueError(f"runtime variable {name} has no value now: {exc}") from None
        finally:
            variable.close()
    return values


@task(
    name="exec",
    auto_shortflags=False,  # -p and -c already mean --prepare and --config elsewhere
    help={
        "process": "Run in exactly the environment the session starts this process with "
        "(a process, reloader.process, or a reloader): its env files and env: values.",
        "config": CONFIG_HELP,
    },
)
def exec_(c: Context, process: str | None = None, config: str | None = None) -> None:
    """Run `-- CMD…` with the tools on PATH and the config's variables and env files."""
    from caproni_tasks.config import load_config
    from caproni_tasks.diagnostics import has_errors
    from caproni_tasks.tasks.session import _tools_on_path

    command = _command(c)
    if not command:
        fail("exec: give the command after --, e.g. `invoke exec -- make test`", 2)
    path = setting_path(c, "config", config)
    if not path.exists():
        fail(f"{path}: no such config file (write one, or name it with --config)", 2)
    result = load_config(path)
    if result.config is None or has_errors(result.diagnostics):
        fail(f"{path}: has errors (see `invoke validate`)", 1)
    _tools_on_path(c)
    try:
        env = exec_environment(result.config, dict(os.environ), process)
    except ValueError as exc:
        fail(str(exc), 1)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # Replaced by the command: its exit code and signals are the caller's directly.
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        fail(f"exec: {command[0]}: command not found", 127)
    except OSError as exc:
        fail(f"exec: {command[0]}: {exc.strerror or exc}", 126)
