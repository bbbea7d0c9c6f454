"""Crash restarts: backoff that grows, max_restarts → failed, the three policies."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from helpers_processes import anyio_backend, async_wait_until, spec, supervising

from caproni_tasks.config.model import ProcessRef
from caproni_tasks.reloader.backoff import Backoff, BackoffPolicy
from caproni_tasks.reloader.supervisor import ProcessState, describe_exit

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]
__all__ = ["anyio_backend"]


def test_backoff_doubles_caps_and_resets_after_healthy_run() -> None:
    backoff = Backoff(BackoffPolicy(base=0.5, factor=2, cap=30, healthy_after=60))
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30]
    backoff.record_exit(ran_for=5)
    assert backoff.next_delay() == 30
    backoff.record_exit(ran_for=61)
    assert backoff.crashes == 0
    assert backoff.next_delay() == 0.5


def test_backoff_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(factor=0.5)


def test_describe_exit() -> None:
    assert describe_exit(None) == "-"
    assert describe_exit(0) == "exit 0"
    assert describe_exit(3) == "exit 3"
    assert describe_exit(-9) == "SIGKILL"
    assert describe_exit(127) == "exit 127 (command not found)"
    assert describe_exit(126) == "exit 126 (command not executable)"


def _starts(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [float(x) for x in path.read_text().split()]


async def test_crash_restarts_with_growing_backoff(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    command = f"{_stamp(starts)}; exit 3"
    specs = [spec("crasher", command, tmp_path, max_restarts=4)]
    async with supervising("r", specs, backoff=BackoffPolicy(base=0.1, factor=2, cap=5)) as (
        sup,
        out,
        _,
    ):
        process = sup.processes[ProcessRef("r", "crasher")]
        try:
            await async_wait_until(lambda: process.state == ProcessState.FAILED)
        finally:
            print(out.text)
    times = _starts(starts)
    assert len(times) == 5  # the first run and 4 restarts
    intervals = [b - a for a, b in itertools.pairwise(times)]
    for interval, nominal in zip(intervals, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert interval >= nominal * 0.95
    # Start-up overheads cancel out in the difference; the delays grew by 0.7 s.
    assert intervals[-1] - intervals[0] >= 0.5
    assert process.restarts == 4
    assert process.last_exit == 3
    assert "failed after 4 restarts in a row" in out.text
    assert "restarting in 0.1s" in out.text and "restarting in 0.8s" in out.text


def _stamp(path: Path) -> str:
    return f"python3 -c \"import time; open('{path}', 'a').write(str(time.time()) + chr(10))\""


async def test_max_restarts_zero_fails_at_first_crash(tmp_path: Path) -> None:
    specs = [spec("once", "exit 1", tmp_path, max_restarts=0)]
    async with supervising("r", specs) as (sup, _out, _):
        process = sup.processes[ProcessRef("r", "once")]
        await async_wait_until(lambda: process.state == ProcessState.FAILED)
        assert process.restarts == 0


async def test_never_policy_does_not_restart_and_supervise_returns(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    specs = [spec("job", f"{_stamp(starts)}; exit 2", tmp_path, restart="never")]
    async with supervising("r", specs) as (sup, _out, task):
        # Nothing can restart it (no watch, no runtime variables): supervision ends.
        await asyncio.wait_for(asyncio.shield(task), 20)
        process = sup.processes[ProcessRef("r", "job")]
        assert process.state == ProcessState.EXITED
        assert process.last_exit == 2
        assert process.restarts == 0
    assert len(_starts(starts)) == 1


async def test_on_failure_policy_leaves_a_clean_exit_alone(tmp_path: Path) -> None:
    specs = [spec("ok", "echo done", tmp_path)]
    async with supervising("r", specs) as (sup, out, task):
        await asyncio.wait_for(asyncio.shield(task), 20)
        process = sup.processes[ProcessRef("r", "ok")]
        assert process.state == ProcessState.EXITED
        assert process.restarts == 0
    assert "done" in out.lines_of("ok")


async def test_always_policy_restarts_a_clean_exit_without_counting_it(tmp_path: Path) -> None:
    """Exit 0 under `always` is not a crash: restarts go on past max_restarts, still
    paced by the backoff (each start waits at least the growing delay)."""
    starts = tmp_path / "starts"
    specs = [spec("loop", _stamp(starts), tmp_path, restart="always", max_restarts=2)]
    backoff = BackoffPolicy(base=0.05, factor=2.0, cap=1.0)
    async with supervising("r", specs, backoff=backoff) as (sup, out, _):
        process = sup.processes[ProcessRef("r", "loop")]
        await async_wait_until(lambda: len(_starts(starts)) >= 6)
        assert process.state != ProcessState.FAILED
        assert process.backoff.crashes == 0
    times = _starts(starts)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.4, 0.8], strict=False):
        assert gap >= delay * 0.9, (gaps, times)
    assert "failed after" not in out.text


async def test_always_policy_still_gives_up_on_crashes(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    specs = [spec("loop", f"{_stamp(starts)}; exit 3", tmp_path, restart="always", max_restarts=2)]
    async with supervising("r", specs) as (sup, out, _):
        process = sup.processes[ProcessRef("r", "loop")]
        await async_wait_until(lambda: process.state == ProcessState.FAILED)
    assert len(_starts(starts)) == 3
    assert "exit 3; failed after 2 restarts in a row" in out.text


def test_backoff_paces_clean_exits_without_counting_them() -> None:
    backoff = Backoff(BackoffPolicy(base=0.5, factor=2, cap=30, healthy_after=60))
    assert [backoff.next_delay(crash=False) for _ in range(3)] == [0.5, 1, 2]
    assert backoff.crashes == 0
    assert backoff.next_delay() == 4  # a crash after quick clean exits: paced alike
    assert backoff.crashes == 1
    backoff.record_exit(ran_for=61)
    assert (backoff.crashes, backoff.next_delay(crash=False)) == (0, 0.5)


async def test_unstartable_directory_is_reported_not_raised(tmp_path: Path) -> None:
    specs = [spec("bad", "true", tmp_path / "missing", max_restarts=0)]
    async with supervising("r", specs) as (_sup, out, task):
        await asyncio.wait_for(asyncio.shield(task), 20)
    assert "cannot start" in out.text
