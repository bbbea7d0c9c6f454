"""``invoke logs`` / ``invoke restart``: talk to a running ``invoke run`` from another
terminal, over its control socket (`caproni_tasks.reloader.control`)."""

from __future__ import annotations

import json as jsonlib
import sys
import time
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.tasks import task

from caproni_tasks.tasks._common import fail, setting_path

CONFIG_HELP = "The session config (default: the `caproni.config` setting, else caproni.yaml)."


def _control_path(config: Path) -> Path:
    """The control socket of the running session of ``config``; fails (exit 1) when no
    session runs."""
    from caproni_tasks.reloader.session import load_session

    loaded = load_session(config)
    record = loaded.record
    if record is None or not record.alive:
        state = "is stale (its supervisor is gone)" if loaded.exists else "is running"
        prefix = f"no session {state}" if loaded.exists else "no session is running"
        fail(f"{prefix} for {config}; start one with `invoke run`", 1)
    if record.control is None:
        fail(
            f"the session for {config} (pid {record.supervisor_pid}) has no control socket; "
            "see its output",
            1,
        )
    return Path(record.control)


def _since(value: str | None) -> float | None:
    """``--since 5m`` as an epoch time; a bad value is a usage error (exit 2)."""
    if value is None:
        return None
    from caproni_tasks.config.spec import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        fail(f"--since: expected a duration such as 30s, 5m or 1h; found {value!r}", 2)
    return time.time() - seconds


def _show(reply: dict[str, Any], width: int, as_json: bool) -> None:
    if as_json:
        line = {k: reply.get(k) for k in ("time", "process", "text", "event")}
        sys.stdout.write(jsonlib.dumps(line) + "\n")
    elif reply.get("type") == "dropped":
        sys.stdout.write(f"({reply.get('count')} lines dropped: too slow to follow)\n")
    else:
        stamp = time.strftime("%H:%M:%S", time.localtime(float(reply.get("time", 0.0))))
        text = str(reply.get("text", ""))
        if reply.get("event"):
            text = f":: {text}"
        sys.stdout.write(f"{stamp} {str(reply.get('process', '')).ljust(width)} | {text}\n")
    sys.stdout.flush()


@task(
    name="logs",
    positional=["name"],
    help={
        "name": "A process (its name, reloader.process, or a reloader for all of its "
        "processes; caproni for the supervisor's own lines). Default: every process.",
        "follow": "Keep printing new lines as they come, until the session ends or Ctrl-C.",
        "since": "Only lines from this long ago on: 30s, 5m, 1h (default: all kept lines).",
        "json": "Print one JSON object per line: time, process, text, event.",
        "config": CONFIG_HELP,
    },
)
def logs(
    c: Context,
    name: str | None = None,
    follow: bool = False,
    since: str | None = None,
    json: bool = False,
    config: str | None = None,
) -> None:
    """Print the recent output of a running session's processes (-f follows it)."""
    from caproni_tasks.reloader.control import ControlError, request

    since_time = _since(since)
    path = setting_path(c, "config", config)
    control = _control_path(path)
    message = {"op": "logs", "process": name or None, "since": since_time, "follow": follow}
    width = 0
    try:
        replies = request(control, message, timeout=None if follow else 10.0)
        for reply in replies:
            kind = reply.get("type")
            if kind == "ok":
                width = max((len(str(label)) for label in reply.get("labels") or ()), default=0)
            elif kind in ("line", "dropped"):
                width = max(width, len(str(reply.get("process", ""))))
                _show(reply, width, json)
            elif kind == "end" and reply.get("reason") and not json:
                print(f"({reply['reason']})", file=sys.stderr)
    except ControlError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


#: ``invoke logs`` and ``invoke logs NAME`` (see `caproni_tasks.tasks._commands`).
logs.optional_positional = ("name",)


@task(
    name="restart",
    help={
        "name": "The process to restart: its name, reloader.process, or a reloader "
        "(all of its processes).",
        "config": CONFIG_HELP,
    },
)
def restart(c: Context, name: str, config: str | None = None) -> None:
    """Restart a process of the running session now (stop it, start it again)."""
    from caproni_tasks.reloader.control import ControlError, request

    path = setting_path(c, "config", config)
    control = _control_path(path)
    try:
        for reply in request(control, {"op": "restart", "process": name}, timeout=90.0):
            if reply.get("type") == "ok":
                print(reply.get("message", "restarted"))
    except ControlError as exc:
        fail(str(exc), 1)
