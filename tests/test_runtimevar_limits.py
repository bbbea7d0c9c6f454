"""Runtime-variable URLs at their limits: durations out of range, NUL in paths, and a
retry timer thread that outlives any one variable's failure (issue 11, item 9)."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import pytest
from invoke.program import Program

import caproni_tasks
from caproni_tasks.runtimevar import (
    BYTES,
    ErrorCode,
    VariableError,
    check_variable_url,
    open_file_variable,
    open_variable,
)
from caproni_tasks.runtimevar.durations import parse_duration
from caproni_tasks.runtimevar.filevar import DEFAULT_WAIT, MAX_WAIT, MIN_WAIT, FileDriver
from caproni_tasks.runtimevar.scheduler import Scheduler

LONG = 10.0


def url_problem(url: str, base_dir: Path) -> str:
    with pytest.raises(VariableError) as info:
        check_variable_url(url, base_dir=base_dir)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return str(info.value)


@pytest.mark.parametrize(
    "wait",
    ["99999999999999999999999h", "1" + "0" * 400 + "h", "1ns", "9ms", "25h", "1000000h"],
)
def test_wait_outside_the_range_is_refused(tmp_path: Path, wait: str) -> None:
    url = f"file://./v?wait={wait}"
    message = url_problem(url, tmp_path)
    assert message.startswith(f'open variable {url}: invalid wait "{wait}"')
    with pytest.raises(VariableError):
        open_variable(url, base_dir=tmp_path)


def test_wait_range_message_names_the_bounds(tmp_path: Path) -> None:
    assert url_problem("file://./v?wait=1ns", tmp_path).endswith(
        'invalid wait "1ns": must be between 10ms and 24h (or 0 for the default 30s)'
    )


@pytest.mark.parametrize(("wait", "seconds"), [("10ms", 0.01), ("24h", 86400.0), ("0", 30.0)])
def test_wait_at_the_bounds_is_accepted(tmp_path: Path, wait: str, seconds: float) -> None:
    var = open_variable(f"file://./v?wait={wait}", base_dir=tmp_path)
    try:
        assert isinstance(var._driver, FileDriver)
        assert var._driver.wait == pytest.approx(seconds)
    finally:
        var.close()


def test_go_cannot_represent_the_duration() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("3000000h")  # > 2**63 ns, as Go's time.ParseDuration
    assert parse_duration("2562047h") == pytest.approx(2562047 * 3600)


@pytest.mark.parametrize(
    ("wait", "expected"),
    [(1e-9, MIN_WAIT), (1e30, MAX_WAIT), (math.inf, MAX_WAIT), (math.nan, DEFAULT_WAIT)],
)
def test_python_api_clamps_wait(tmp_path: Path, wait: float, expected: float) -> None:
    var = open_file_variable(tmp_path / "v", BYTES, wait=wait)
    try:
        assert isinstance(var._driver, FileDriver)
        assert var._driver.wait == expected
    finally:
        var.close()


@pytest.mark.parametrize("url", ["file://./a%00b", "file:///tmp/a%00", "file://./a%ff"])
def test_unusable_path_bytes_are_url_errors(tmp_path: Path, url: str) -> None:
    message = url_problem(url, tmp_path)
    assert message.startswith(f"open variable {url}: ")
    assert "NUL" in message or "UTF-8" in message


def test_nul_in_a_python_path_is_a_variable_error(tmp_path: Path) -> None:
    with pytest.raises(VariableError) as info:
        open_file_variable(str(tmp_path / "a\x00b"), BYTES)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_invoke_var_with_nul_exits_2_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    program = Program(namespace=caproni_tasks.namespace(), version="test")
    with pytest.raises(SystemExit) as info:
        program.run(["invoke", "var", "file://./a%00b"], exit=True)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "NUL" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("delay", [1e30, math.inf, 99999999999999999999999 * 3600.0, math.nan])
def test_huge_delay_does_not_kill_the_timer_thread(delay: float) -> None:
    scheduler = Scheduler()
    far = scheduler.call_later(delay, lambda: None)
    fired = threading.Event()
    scheduler.call_later(0.01, fired.set)
    try:
        assert fired.wait(LONG), "the timer thread died: a later timer never ran"
    finally:
        far.cancel()


def test_a_failing_callback_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler()
    fired = threading.Event()

    def broken() -> None:
        raise RuntimeError("refresh exploded")

    with caplog.at_level(logging.ERROR, logger="caproni_tasks.runtimevar"):
        scheduler.call_later(0.0, broken)
        scheduler.call_later(0.02, fired.set)
        assert fired.wait(LONG)
    assert any("retry failed" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info and "refresh exploded" in str(r.exc_info[1]) for r in caplog.records)


def test_the_timer_thread_is_restarted_after_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a timer thread that dies lets the next call_later start a fresh one."""
    scheduler = Scheduler()
    real = scheduler._next_due
    calls = {"n": 0}

    def failing_once() -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OverflowError("simulated")
        return real()

    monkeypatch.setattr(scheduler, "_next_due", failing_once)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    first = threading.Event()
    scheduler.call_later(0.0, first.set)
    thread = scheduler._thread
    assert thread is not None
    thread.join(LONG)
    assert not thread.is_alive()
    second = threading.Event()
    scheduler.call_later(0.0, second.set)
    assert second.wait(LONG) and first.wait(LONG)
