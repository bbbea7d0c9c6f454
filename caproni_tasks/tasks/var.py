"""``invoke var NAME|URL``: print a runtime variable's value, or follow its changes.

A debugging aid for config feeds: it prints values because the user asked for them;
nothing else in caproni-tasks ever logs a variable's value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from caproni_tasks.tasks._common import fail

if TYPE_CHECKING:
    from caproni_tasks.runtimevar import Snapshot, Variable, VariableError


@task(
    help={
        "url": "A runtime variable's name from caproni.yaml (runtimevars:), or a variable "
        "URL, e.g. file://./conf/flags.json?decoder=jsonmap (relative paths in a URL "
        "resolve against the current directory).",
        "config": "The config whose runtimevars: names NAME (default: the `caproni.config` "
        "setting, else caproni.yaml).",
        "follow": "Keep running and print every change (with its time) until Ctrl-C.",
        "json": "Print JSON: one object per value with its update_time (JSON lines with --follow).",
    },
)
def var(
    c: Context, url: str, follow: bool = False, json: bool = False, config: str | None = None
) -> None:
    """Print the decoded value of a runtime variable (by name or URL), or follow it."""
    import re

    from caproni_tasks.config.expand import NAME_PATTERN
    from caproni_tasks.runtimevar import VariableError, open_variable

    base_dir = Path.cwd()
    if re.fullmatch(NAME_PATTERN, url):
        url, base_dir = _named(c, url, config)
    try:
        variable = open_variable(url, base_dir=base_dir)
    except VariableError as exc:
        fail(str(exc), 2)
    try:
        if follow:
            _follow(variable, as_json=json)
        else:
            _print_once(variable, as_json=json)
    except BrokenPipeError:
        _quiet_broken_pipe()
    finally:
        if not variable.closed:
            variable.close()


def _named(c: Context, name: str, config: str | None) -> tuple[str, Path]:
    """The URL and base directory of the runtime variable ``name`` of the config."""
    from caproni_tasks.config import load_config
    from caproni_tasks.tasks._common import setting_path

    path = setting_path(c, "config", config)
    if not path.exists():
        fail(
            f"{name!r} is not a URL, and there is no {path} whose runtimevars: could name it "
            "(give a URL such as file://./flags.json, or --config)",
            2,
        )
    loaded = load_config(path).config
    if loaded is None:
        fail(f"{path}: has errors (see `invoke validate`)", 1)
    spec = loaded.runtimevars.get(name)
    if spec is None:
        known = ", ".join(sorted(loaded.runtimevars)) or "none"
        fail(f"no runtime variable {name!r} in {path} (runtimevars: {known})", 2)
    return spec.url, spec.base_dir


def _print_once(variable: Variable[Any], *, as_json: bool) -> None:
    from caproni_tasks.runtimevar import VariableError

    try:
        snapshot = variable.watch()  # the state read at open: value or error, no waiting
    except VariableError as exc:
        if as_json:
            _print_error(exc, as_json=True)
            raise Exit(code=1) from None
        fail(f"error {exc.code.name}: {exc}", 1)
    _print_value(snapshot, as_json=as_json, with_time=False)


def _follow(variable: Variable[Any], *, as_json: bool) -> None:
    from caproni_tasks.runtimevar import VariableError

    try:
        for item in variable.changes(errors="yield"):
            if isinstance(item, VariableError):
                _print_error(item, as_json=as_json)
            else:
                _print_value(item, as_json=as_json, with_time=True)
    except KeyboardInterrupt:
        return


def _print_value(snapshot: Snapshot[Any], *, as_json: bool, with_time: bool) -> None:
    import json

    stamp = snapshot.update_time.isoformat(timespec="milliseconds")
    value = snapshot.value
    if as_json:
        record: dict[str, Any] = {"update_time": stamp}
        record.update(_json_value(value))
        _emit(sys.stdout, json.dumps(record, ensure_ascii=False, default=_json_default))
        return
    if with_time:
        _emit(sys.stdout, f"# {stamp}")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            _emit(sys.stderr, f"(value is not UTF-8 text: {len(value)} bytes shown as base64)")
            value = base64.b64encode(value).decode("ascii")
    if isinstance(value, str):
        _emit(sys.stdout, value if value.endswith("\n") else value + "\n", end="")
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)
        _emit(sys.stdout, text)


def _json_value(value: Any) -> dict[str, Any]:
    """The value as JSON fields; bytes say how they are encoded."""
    if isinstance(value, bytes):
        try:
            return {"value": value.decode("utf-8"), "encoding": "utf-8"}
        except UnicodeDecodeError:
            import base64

            return {"value": base64.b64encode(value).decode("ascii"), "encoding": "base64"}
    return {"value": value}


def _json_default(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def _print_error(exc: VariableError, *, as_json: bool) -> None:
    import json
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    if as_json:
        record = {"time": stamp, "error": {"code": exc.code.name, "message": str(exc)}}
        _emit(sys.stderr, json.dumps(record, ensure_ascii=False))
    else:
        _emit(sys.stderr, f"{stamp} error {exc.code.name}: {exc}")


def _emit(stream: TextIO, text: str, end: str = "\n") -> None:
    stream.write(text + end)
    stream.flush()


def _quiet_broken_pipe() -> None:
    """The reader went away (``| head``): stop without a traceback or a flush error."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
