"""``invoke run`` / ``status`` / ``validate`` / ``clean``: a development session from
caproni.yaml, what it is doing, whether its config is sound, and cleaning up after it."""

from __future__ import annotations

import json as jsonlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from caproni_tasks.tasks._common import fail, listed, print_diagnostics, setting_path

if TYPE_CHECKING:
    from caproni_tasks.config.model import CaproniConfig
    from caproni_tasks.diagnostics import Diagnostic
    from caproni_tasks.reloader.session import SessionRecord

CONFIG_HELP = "The session config (default: the `caproni.config` setting, else caproni.yaml)."


def _load(path: Path) -> tuple[CaproniConfig | None, list[Diagnostic], dict[str, str]]:
    from caproni_tasks.config import load_config

    if not path.exists():
        fail(f"{path}: no such config file (write one, or name it with --config)", 2)
    result = load_config(path)
    return result.config, list(result.diagnostics), dict(result.sources)


def _validate_all(config: CaproniConfig, only: list[str] | None = None) -> list[Diagnostic]:
    from caproni_tasks.reloader.validation import validate_reloaders

    return validate_reloaders(config, only or ())


def _checked_config(
    path: Path, only: list[str] | None = None, *, selected: bool = False
) -> CaproniConfig:
    """Load and validate (the reloaders in ``only``, when given, and with ``selected``
    those edit mode lets run: a reloader left out cannot stop the others); print every
    diagnostic; stop on errors."""
    from caproni_tasks.diagnostics import has_errors

    config, diagnostics, sources = _load(path)
    if config is not None:
        known = [name for name in only or () if name in config.reloaders]
        names = known if known == only else None
        if selected and not only:
            from caproni_tasks.reloader.selection import select

            names = [spec.name for spec in select(config).run] or None
        diagnostics.extend(_validate_all(config, names))
    if diagnostics:
        print_diagnostics(diagnostics, "text", sources)
    if config is None or has_errors(diagnostics):
        fail(f"{path}: refusing to start until the errors above are fixed", 1)
    return config


def _tools_on_path(c: Context) -> None:
    """Put the ensure root's ``bin/`` first on PATH (tools the project pins)."""
    tools_bin = setting_path(c, "root") / "bin"
    if tools_bin.is_dir():
        current = os.environ.get("PATH", os.defpath)
        if str(tools_bin) not in current.split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([str(tools_bin), current])


@task(
    iterable=["only"],
    help={
        "only": "Run only this reloader (repeatable), whatever its edit mode. Default: "
        "every reloader, except those of kinds that need edit_mode: true (mirror).",
        "config": CONFIG_HELP,
        "prepare": "Run the edit_mode_prepare lifecycle hooks again, even if unchanged.",
    },
)
def run(
    c: Context, only: list[str] | None = None, config: str | None = None, prepare: bool = False
) -> None:
    """Run the reloaders of caproni.yaml with restarts and hot reload until Ctrl-C."""
    import asyncio

    from caproni_tasks.reloader import ReloaderError, RunFailedError
    from caproni_tasks.reloader.output import Output
    from caproni_tasks.reloader.runner import run_session
    from caproni_tasks.reloader.selection import select, skipped_message

    path = setting_path(c, "config", config)
    names = listed(only)
    loaded = _checked_config(path, names, selected=True)
    try:
        selection = select(loaded, names)
    except RunFailedError as exc:
        fail(str(exc), 2)
    if not loaded.reloaders:
        fail(f"{path}: no reloaders to run", 1)
    if not selection.run:
        fail(f"{path}: no reloaders to run; " + skipped_message(loaded, selection.skipped), 1)
    _tools_on_path(c)
    output = Output()
    try:
        result = asyncio.run(run_session(loaded, only=names, output=output, prepare=prepare))
    except ReloaderError as exc:
        fail(str(exc), 1)
    finally:
        output.close()  # what is still buffered, unless the consumer stays stuck
    if result.errors:
        fail("\n".join(result.errors), result.exit_code or 1)
    if result.exit_code:
        raise Exit(code=result.exit_code)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _status_data(path: Path, config: CaproniConfig | None) -> dict[str, Any]:
    """Reloaders of the config (or, when it does not load, of the recorded session) with
    their states, and the running session's processes."""
    from caproni_tasks.reloader import ReloaderError, new_manager
    from caproni_tasks.reloader.proctree import is_alive
    from caproni_tasks.reloader.session import load_session
    from caproni_tasks.reloader.supervisor import describe_exit

    path = config.path if config is not None else path
    loaded = load_session(path)
    record: SessionRecord | None = loaded.record
    now = time.time()
    if loaded.problem is not None:
        session: dict[str, Any] = {
            "state": "stale",
            "file": str(loaded.path),
            "problem": loaded.problem,
        }
    elif record is None:
        session = {"state": "none"}
    else:
        session = {
            "state": "running" if record.alive else "stale",
            "pid": record.supervisor_pid,
            "started_at": record.started_at,
            "updated_at": record.updated_at,
        }
    kinds = {name: spec.type for name, spec in (config.reloaders if config else {}).items()}
    for name, kind in (record.reloaders if record else {}).items():
        kinds.setdefault(name, kind)
    reloaders: list[dict[str, Any]] = []
    for name, kind in kinds.items():
        spec = config.reloaders.get(name) if config is not None else None
        if spec is None:
            why = "the config does not load" if config is None else "no longer in the config"
            state, reasons = "unknown", [f"{why}; shown as the running session recorded it"]
        else:
            assert config is not None
            try:
                status = new_manager(kind).status(spec, config)
                state, reasons = str(status.state), list(status.reasons)
            except ReloaderError as exc:
                state, reasons = "unknown", [str(exc)]
        processes: list[dict[str, Any]] = []
        if record is not None:
            for proc in record.processes:
                if proc.reloader != name:
                    continue
                alive = proc.pid is not None and is_alive(proc.pid, proc.pid_start)
                gone_state = "orphaned" if alive else "gone"
                proc_state = proc.state if record.alive else gone_state
                running = alive and proc_state not in ("exited", "failed", "stopped", "gone")
                processes.append(
                    {
                        "name": proc.name,
                        "pid": proc.pid if alive else None,
                        "state": proc_state,
                        "restarts": proc.restarts,
                        "uptime": (now - proc.started_at) if running and proc.started_at else None,
                        "last_exit": proc.last_exit,
                        "last_exit_text": describe_exit(proc.last_exit),
                    }
                )
        reloaders.append(
            {
                "name": name,
                "type": kind,
                "state": state,
                "reasons": reasons,
                "processes": processes,
            }
        )
    return {"config": str(path), "session": session, "reloaders": reloaders}


def _render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _session_line(data: dict[str, Any]) -> str:
    session = data["session"]
    if session["state"] == "running":
        age = _age(time.time() - session["started_at"])
        return f"session: running (supervisor pid {session['pid']}, up {age})"
    if session["state"] == "stale":
        if "problem" in session:
            return (
                f"session: stale (unusable state file {session['file']}: {session['problem']}); "
                "`invoke clean` removes it"
            )
        return (
            f"session: stale (supervisor pid {session['pid']} is gone); "
            "`invoke clean` removes it and its leftovers"
        )
    return "session: not running"


@task(
    help={
        "json": "Print JSON instead of a table.",
        "config": CONFIG_HELP,
        "wait": "Wait for a condition instead of showing the table: `ready` (every process "
        "of the running session is ready). Exit 0 once it holds, 1 on timeout or failure.",
        "timeout": "Seconds --wait waits (default 60).",
    },
)
def status(
    c: Context,
    json: bool = False,
    config: str | None = None,
    wait: str | None = None,
    timeout: str = "60",
) -> None:
    """Show each reloader's state and, while `invoke run` is active, its processes."""
    path = setting_path(c, "config", config)
    if wait is not None:
        _wait_for(path, wait, timeout)
        return
    loaded, _, _ = _load(path)
    if loaded is None:
        # Still show a running session: its config may be mid-edit.
        print(f"{path}: has errors (see `invoke validate`)", file=sys.stderr)
    _tools_on_path(c)
    data = _status_data(path, loaded)
    if json:
        sys.stdout.write(jsonlib.dumps(data, indent=2) + "\n")
    else:
        _print_status_table(data)
    if loaded is None:
        raise Exit(code=1)


#: Process states that no waiting turns into ready (until something changes).
_GIVEN_UP = ("failed", "exited", "stopped")


def _wait_for(path: Path, condition: str, timeout_text: str) -> None:
    """``status --wait ready``: poll the session's state file until every process is
    ready (exit 0); exit 1 with a one-line reason on timeout or when one failed."""
    from caproni_tasks.config.spec import parse_duration
    from caproni_tasks.reloader.session import load_session

    if condition != "ready":
        fail(f"--wait: expected ready; found {condition!r}", 2)
    try:
        timeout = parse_duration(timeout_text)
    except ValueError:
        fail(f"--timeout: expected seconds or a duration such as 30s; found {timeout_text!r}", 2)
    deadline = time.monotonic() + timeout
    reason = "no session is running (start one with `invoke run`)"
    seen_session = False
    while True:
        loaded = load_session(path)
        record = loaded.record
        if record is not None and record.alive:
            seen_session = True
            processes = record.processes
            done = [p for p in processes if p.state == "exited" and p.last_exit == 0]
            given_up = [p for p in processes if p.state in _GIVEN_UP and p not in done]
            if given_up:
                from caproni_tasks.reloader.supervisor import describe_exit

                what = ", ".join(
                    f"{p.name} {p.state} ({describe_exit(p.last_exit)})" for p in given_up
                )
                fail(f"not ready: {what}", 1)
            pending = [p for p in processes if p.state != "ready" and p not in done]
            if processes and not pending:
                print(f"ready: {', '.join(p.name for p in processes)}")
                return
            reason = (
                "not ready: " + ", ".join(f"{p.name} ({p.state})" for p in pending)
                if pending
                else "the session has not started its processes yet"
            )
        elif seen_session:
            fail("the session ended before every process was ready", 1)
        if time.monotonic() >= deadline:
            fail(f"timed out after {timeout:g}s: {reason}", 1)
        time.sleep(0.05)


def _print_status_table(data: dict[str, Any]) -> None:
    header = ["RELOADER", "KIND", "STATE", "PROCESS", "PID", "P-STATE", "RESTARTS", "UPTIME"]
    rows = [[*header, "LAST EXIT"]]
    notes: list[str] = []
    for reloader in data["reloaders"]:
        head = [reloader["name"], reloader["type"], reloader["state"]]
        for reason in reloader["reasons"]:
            notes.append(f"{reloader['name']}: {reason}")
        if not reloader["processes"]:
            rows.append([*head, "-", "", "", "", "", ""])
        for index, proc in enumerate(reloader["processes"]):
            rows.append(
                [
                    *(head if index == 0 else ["", "", ""]),
                    proc["name"],
                    str(proc["pid"] or "-"),
                    proc["state"],
                    str(proc["restarts"]),
                    _age(proc["uptime"]) if proc["uptime"] is not None else "-",
                    proc["last_exit_text"],
                ]
            )
    print(_session_line(data))
    print(_render_table(rows))
    for note in notes:
        print(f"  {note}")


@task(
    auto_shortflags=False,  # -f and -c mean --follow and --config elsewhere, not --format
    help={
        "format": "Output format: text (with source and caret), github (annotations) or json.",
        "config": CONFIG_HELP,
    },
)
def validate(c: Context, format: str = "text", config: str | None = None) -> None:
    """Check caproni.yaml and every reloader's settings without running anything."""
    from caproni_tasks.diagnostics import has_errors

    path = setting_path(c, "config", config)
    loaded, diagnostics, sources = _load(path)
    if loaded is not None:
        diagnostics.extend(_validate_all(loaded))
    print_diagnostics(diagnostics, format, sources)
    if loaded is None or has_errors(diagnostics):
        raise Exit(code=1)
    if format == "text" and not diagnostics:
        count = len(loaded.reloaders)
        print(f"{path}: ok ({count} reloader{'s' if count != 1 else ''})")


@task(help={"config": CONFIG_HELP})
def clean(c: Context, config: str | None = None) -> None:
    """Remove what a crashed `invoke run` left behind: its state, its leftover processes."""
    from caproni_tasks.reloader.kubectl import restore_leftover_copies
    from caproni_tasks.reloader.session import clean_session

    path = setting_path(c, "config", config)
    report = clean_session(path)
    restored: list[str] = []
    unrestored: list[str] = []
    if report.alive_pid is None:
        # Deployment copies of a crashed mirror session: original scaled back, copy deleted.
        _tools_on_path(c)
        restored, unrestored = restore_leftover_copies(path)
    if not report.found and not report.killed and not restored and not unrestored:
        print(f"nothing to clean for {path}")
        return
    if report.alive_pid is not None:
        fail(
            f"a session for {path} is running (pid {report.alive_pid}); stop it with Ctrl-C "
            "in its terminal (or kill -TERM it) instead of cleaning",
            1,
        )
    if report.killed:
        print(
            f"stopped {len(report.killed)} leftover processes: {', '.join(map(str, report.killed))}"
        )
    if report.survivors:
        print(f"could not stop: {', '.join(map(str, report.survivors))}", file=sys.stderr)
    if report.remove_error is not None:
        fail(f"could not remove the state file {report.path}: {report.remove_error}", 1)
    if report.problem is not None:
        print(f"removed an unusable state file {report.path}: {report.problem}")
    elif report.found:
        print(f"removed the state of a stale session for {path}")
    for line in restored:
        print(line)
    if unrestored:
        fail("\n".join([*unrestored, "fix the cluster access and run `invoke clean` again"]), 1)
