"""``invoke exec -- CMD…``: a command in the project's environment, like ``mise exec``
or ``honcho run``: the ensure root's ``bin/`` first on PATH, the config's ``variables``
and the reloaders' ``env_file`` variables in the environment. The command replaces
this process (``execvpe``), so its exit code and signals are the caller's."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from caproni_tasks.tasks._common import fail, setting_path

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig

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
    """``base`` with the config's variables, then each reloader's ``env_file`` (file
    order); with ``process`` (a process name, ``reloader.process`` or a reloader), only
    its reloader's env file and the process's own. `ValueError` says what is wrong."""
    from caproni_tasks.config.dotenv import load_env_files

    env = dict(base)
    env.update(config.variables)
    files: list[Path] = []
    if process is None:
        files = [r.env_file for r in config.reloaders.values() if r.env_file is not None]
    else:
        files = _process_env_files(config, process)
    try:
        env.update(load_env_files(dict.fromkeys(files)))
    except OSError as exc:
        raise ValueError(f"env_file {exc.filename}: {exc.strerror or exc}") from None
    return env


def _process_env_files(config: CaproniConfig, name: str) -> list[Path]:
    from caproni_tasks.config.model import ProcessSpec

    reloader_name, dot, process_name = name.partition(".")
    files: list[Path] = []
    known: list[str] = []
    found = False
    for reloader in config.reloaders.values():
        processes = getattr(reloader.settings, "processes", ())
        for spec in processes if isinstance(processes, tuple) else ():
            if not isinstance(spec, ProcessSpec):
                continue
            known.append(f"{reloader.name}.{spec.name}")
            wanted = (
                (reloader.name, spec.name) == (reloader_name, process_name)
                if dot
                else (name in (spec.name, reloader.name))
            )
            if wanted:
                found = True
                files.extend(spec.env_files)
        if not dot and name == reloader.name:
            found = True
            if reloader.env_file is not None:
                files.insert(0, reloader.env_file)
    if not found:
        raise ValueError(f"no process {name!r} in the config (processes: {', '.join(known)})")
    return files


@task(
    name="exec",
    auto_shortflags=False,  # -p and -c already mean --prepare and --config elsewhere
    help={
        "process": "Use this process's env files (a process, reloader.process, or a "
        "reloader) instead of every reloader's.",
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
