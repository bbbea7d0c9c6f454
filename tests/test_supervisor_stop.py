"""Stopping: whole process groups, escaped grandchildren, SIGKILL after stop_timeout,
custom stop signals; and output that never interleaves partial lines."""

from __future__ import annotations

import asyncio
import io
import signal
import time
from pathlib import Path

import pytest
from helpers_processes import (
    PY,
    anyio_backend,
    async_wait_until,
    pid_alive,
    read_pid,
    spec,
    supervising,
)

from caproni_tasks.config.model import ProcessRef
from caproni_tasks.reloader.output import LineAssembler, Output
from caproni_tasks.reloader.supervisor import ProcessState

pytestmark = [pytest.mark.timeout(60)]
__all__ = ["anyio_backend"]


@pytest.mark.anyio
async def test_child_ignoring_sigterm_is_killed_after_stop_timeout(tmp_path: Path) -> None:
    command = "trap '' TERM; echo trapped; while :; do sleep 0.05; done"
    specs = [spec("stubborn", command, tmp_path, stop_timeout=0.5)]
    async with supervising("r", specs) as (sup, out, task):
        process = sup.processes[ProcessRef("r", "stubborn")]
        await async_wait_until(lambda: out.exact("stubborn", "trapped") == 1)
        pid = process.pid
        assert pid is not None
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        elapsed = time.monotonic() - started
    assert not pid_alive(pid)
    assert elapsed >= 0.45  # it was given its grace period
    assert "did not stop within 0.5s of SIGTERM; killing" in out.text
    assert process.last_exit == -9


@pytest.mark.anyio
async def test_stop_reaches_grandchildren_in_the_group_and_escaped_ones(tmp_path: Path) -> None:
    # One grandchild stays in the group; another leaves it with setsid.
    command = (
        "sleep 300 & echo $! > gc.pid; "
        f'{PY} -c \'import os; os.setsid(); open("esc.pid", "w").write(str(os.getpid()));'
        " import time; time.sleep(300)' & "
        "wait"
    )
    specs = [spec("tree", command, tmp_path, stop_timeout=3)]
    async with supervising("r", specs) as (_sup, _out, _task):
        grandchild = await async_wait_until(lambda: read_pid(tmp_path / "gc.pid"))
        escaped = await async_wait_until(lambda: read_pid(tmp_path / "esc.pid"))
        assert pid_alive(grandchild) and pid_alive(escaped)
    await async_wait_until(lambda: not pid_alive(grandchild) and not pid_alive(escaped), 10)


@pytest.mark.anyio
async def test_leftovers_of_an_exited_leader_are_stopped_before_restart(tmp_path: Path) -> None:
    # The leader exits but leaves a background job holding on: it must not pile up.
    command = "sleep 300 & echo $! >> jobs.pid; exit 1"
    specs = [spec("leaky", command, tmp_path, max_restarts=2)]
    async with supervising("r", specs) as (sup, _out, _):
        process = sup.processes[ProcessRef("r", "leaky")]
        await async_wait_until(lambda: process.state == ProcessState.FAILED)
        pids = [int(x) for x in (tmp_path / "jobs.pid").read_text().split()]
        assert len(pids) == 3
        assert not any(pid_alive(p) for p in pids)


@pytest.mark.anyio
async def test_custom_stop_signal(tmp_path: Path) -> None:
    command = "trap 'echo got INT; exit 0' INT; echo armed; while :; do sleep 0.05; done"
    specs = [spec("polite", command, tmp_path, stop_signal="SIGINT", stop_timeout=5)]
    async with supervising("r", specs) as (_sup, out, _):
        await async_wait_until(lambda: out.exact("polite", "armed") == 1)
    assert out.exact("polite", "got INT") == 1
    assert "did not stop" not in out.text


@pytest.mark.anyio
async def test_stop_signal_reaches_a_child_when_we_were_started_ignoring_it(
    tmp_path: Path,
) -> None:
    # A shell starts background jobs (`cmd &`, nohup) with SIGINT ignored, and an
    # ignored disposition survives exec: the supervisor must hand children the default.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        command = "trap 'echo got INT; exit 0' INT; echo armed; while :; do sleep 0.05; done"
        specs = [spec("polite", command, tmp_path, stop_signal="SIGINT", stop_timeout=5)]
        async with supervising("r", specs) as (_sup, out, _):
            await async_wait_until(lambda: out.exact("polite", "armed") == 1)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert out.exact("polite", "got INT") == 1
    assert "did not stop" not in out.text


def test_output_prefixes_pads_and_colours() -> None:
    stream = io.BytesIO()
    output = Output(stream, color=False, names=["a", "longer"])
    output.lines("a", [b"one", b"two\r"])
    output.event("longer", "started (pid 1)")
    assert stream.getvalue().decode().splitlines() == [
        "a      | one",
        "a      | two",
        "longer | :: started (pid 1)",
    ]
    coloured = io.BytesIO()
    Output(coloured, color=True).lines("x", [b"hi"])
    assert coloured.getvalue().startswith(b"\x1b[")


def test_output_survives_a_closed_terminal() -> None:
    class Closed(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise OSError(5, "Input/output error")

    output = Output(Closed(), color=False)
    output.lines("a", [b"x"])
    output.event("a", "still fine")
    assert output.broken


def test_line_assembler_keeps_partial_lines_whole() -> None:
    lines = LineAssembler(partial_after=0.0)
    assert lines.feed(b"hel") == []
    assert lines.feed(b"lo\nwor") == [b"hello"]
    assert lines.partial_due()
    assert lines.flush() == [b"wor"]
    big = LineAssembler(max_line=4)
    assert big.feed(b"abcdefghij") == [b"abcd", b"efgh"]


@pytest.mark.anyio
async def test_two_writers_never_interleave_within_a_line(tmp_path: Path) -> None:
    # Each writes long lines in small chunks; every output line must be whole.
    writer = (
        f'{PY} -c "import sys, time\n'
        "for i in range(40):\n"
        "    for part in ('{tag}' * 50, '{tag}' * 50, '\\n'):\n"
        "        sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.001)\n"
        "print('END')\""
    )
    specs = [
        spec("a", writer.format(tag="a"), tmp_path, restart="never"),
        spec("b", writer.format(tag="b"), tmp_path, restart="never"),
    ]
    # A generous partial-line delay: a stall of the loaded CI machine mid-line must not
    # split a line (the delay itself is tested on LineAssembler).
    async with supervising("r", specs, partial_line_after=10.0) as (_sup, out, task):
        await asyncio.wait_for(asyncio.shield(task), 30)
    for name in ("a", "b"):
        body = [line for line in out.lines_of(name) if not line.startswith(":: ")]
        assert body[-1] == "END"
        assert body[:-1] == [name * 100] * 40


@pytest.mark.anyio
async def test_a_prompt_without_newline_is_shown(tmp_path: Path) -> None:
    specs = [spec("asker", "printf 'Password: '; exec sleep 300", tmp_path)]
    async with supervising("r", specs, partial_line_after=0.2) as (_sup, out, _):
        await async_wait_until(lambda: out.exact("asker", "Password: ") == 1)
