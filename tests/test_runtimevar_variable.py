"""Variable semantics, driven by a hand-fed driver (no files): latest, watch, changes,
close, health, the async face."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from caproni_tasks.runtimevar import (
    ERR_CLOSED,
    ErrorCode,
    Publish,
    Snapshot,
    Variable,
    VariableError,
    error_code,
)

LONG = 10.0  # generous: a wait that must never be reached on a healthy run


class FedDriver:
    """A driver whose states the test publishes by hand."""

    def __init__(self) -> None:
        self.publish: Publish | None = None
        self.stopped = 0

    def start(self, publish: Publish) -> None:
        self.publish = publish

    def stop(self) -> None:
        self.stopped += 1

    def value(self, value: Any) -> None:
        assert self.publish is not None
        self.publish(Snapshot(value, datetime.now(UTC)))

    def error(self, code: ErrorCode, message: str) -> None:
        assert self.publish is not None
        self.publish(VariableError(code, message))


@pytest.fixture
def fed() -> Iterator[tuple[Variable[Any], FedDriver]]:
    driver = FedDriver()
    var: Variable[Any] = Variable(driver, name="fed://test")
    yield var, driver
    if not var.closed:
        var.close()


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Run *fn* in a thread; the list receives its result or exception."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def wait_until(predicate: Any, timeout: float = LONG) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def wait_blocked(var: Variable[Any], threads: int) -> None:
    """Wait until *threads* callers are blocked on the variable's condition."""
    wait_until(lambda: len(var._cond._waiters) >= threads)  # type: ignore[attr-defined]


async def async_wait_until(predicate: Any, timeout: float = LONG) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def test_latest_timeout_zero_before_any_value_raises_no_value_yet(fed: Any) -> None:
    var, _ = fed
    start = time.monotonic()
    with pytest.raises(VariableError) as info:
        var.latest(timeout=0)
    assert time.monotonic() - start < 1.0
    assert info.value.code is ErrorCode.FAILED_PRECONDITION
    assert "no value yet" in str(info.value)


def test_latest_timeout_raises_last_error_not_a_timeout(fed: Any) -> None:
    var, driver = fed
    driver.error(ErrorCode.NOT_FOUND, "x: file does not exist")
    with pytest.raises(VariableError) as info:
        var.latest(timeout=0.05)
    assert info.value.code is ErrorCode.NOT_FOUND


def test_latest_blocks_until_first_good_value(fed: Any) -> None:
    var, driver = fed
    driver.error(ErrorCode.NOT_FOUND, "missing")
    thread, out = in_thread(lambda: var.latest(timeout=LONG))
    wait_blocked(var, 1)
    assert not out
    driver.value("hello")
    thread.join(LONG)
    assert out[0].value == "hello"


def test_latest_keeps_last_good_value_through_errors(fed: Any) -> None:
    var, driver = fed
    driver.value(1)
    first = var.latest(timeout=0)
    driver.error(ErrorCode.UNKNOWN, "bad json")
    assert var.latest(timeout=0) is first
    var.check_health()  # a good value was seen: healthy despite the error


def test_watch_first_call_returns_first_state_then_blocks(fed: Any) -> None:
    var, driver = fed
    driver.value("a")
    assert var.watch(timeout=0).value == "a"
    with pytest.raises(VariableError) as info:
        var.watch(timeout=0.05)
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED


def test_watch_timeout_does_not_consume_pending_change(fed: Any) -> None:
    var, driver = fed
    driver.value("a")
    var.watch(timeout=0)
    with pytest.raises(VariableError):
        var.watch(timeout=0.01)
    driver.value("b")
    assert var.watch(timeout=0).value == "b"


def test_watch_returns_newest_state_only(fed: Any) -> None:
    var, driver = fed
    for i in range(5):
        driver.value(i)
    assert var.watch(timeout=0).value == 4
    with pytest.raises(VariableError):
        var.watch(timeout=0)


def test_watch_raises_error_states_with_cause_and_code(fed: Any) -> None:
    var, driver = fed
    cause = ValueError("boom")
    err = VariableError(ErrorCode.UNKNOWN, "decode failed")
    err.__cause__ = cause
    assert driver.publish is not None
    driver.publish(err)
    with pytest.raises(VariableError) as info:
        var.watch(timeout=0)
    assert info.value.code is ErrorCode.UNKNOWN
    assert info.value.__cause__ is cause  # the driver's error, not wrapped twice
    assert not isinstance(info.value.__cause__, VariableError)


def test_equal_consecutive_errors_are_no_new_state(fed: Any) -> None:
    var, driver = fed
    driver.value("ok")
    var.watch(timeout=0)
    driver.error(ErrorCode.UNKNOWN, "same")
    with pytest.raises(VariableError):
        var.watch(timeout=0)
    driver.error(ErrorCode.UNKNOWN, "same")
    with pytest.raises(VariableError) as info:
        var.watch(timeout=0)
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED
    driver.error(ErrorCode.UNKNOWN, "different")
    with pytest.raises(VariableError) as info:
        var.watch(timeout=0)
    assert str(info.value) == "different"


def test_check_health(fed: Any) -> None:
    var, driver = fed
    with pytest.raises(VariableError) as info:
        var.check_health()
    assert info.value.code is ErrorCode.FAILED_PRECONDITION
    driver.error(ErrorCode.PERMISSION_DENIED, "denied")
    with pytest.raises(VariableError) as info:
        var.check_health()
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    driver.value(1)
    var.check_health()


def test_close_wakes_blocked_watch_and_latest(fed: Any) -> None:
    var, driver = fed
    watcher, watch_out = in_thread(lambda: var.watch())
    latest, latest_out = in_thread(lambda: var.latest())
    wait_blocked(var, 2)
    var.close()
    watcher.join(LONG)
    latest.join(LONG)
    assert watch_out[0] is ERR_CLOSED
    assert latest_out[0] is ERR_CLOSED
    assert driver.stopped == 1


def test_everything_after_close_raises_the_shared_closed_error(fed: Any) -> None:
    var, driver = fed
    driver.value(1)
    var.close()
    for call in (var.latest, var.watch, var.check_health, var.close, lambda: var.latest(timeout=0)):
        with pytest.raises(VariableError) as info:
            call()
        assert info.value is ERR_CLOSED
    assert ERR_CLOSED.code is ErrorCode.FAILED_PRECONDITION
    assert str(ERR_CLOSED) == "Variable has been Closed"
    assert driver.stopped == 1  # the second close did not stop the driver again
    driver.value(2)  # a late publish after close is ignored
    assert list(var.changes()) == []


def test_context_manager_closes() -> None:
    driver = FedDriver()
    with Variable[Any](driver, name="fed://cm") as var:
        driver.value("x")
        assert var.latest().value == "x"
    assert var.closed and driver.stopped == 1


def test_concurrent_latest_callers_all_get_the_first_value(fed: Any) -> None:
    var, driver = fed
    started = [in_thread(lambda: var.latest(timeout=LONG)) for _ in range(16)]
    wait_blocked(var, 16)
    driver.value({"n": 1})
    for thread, out in started:
        thread.join(LONG)
        assert isinstance(out[0], Snapshot) and out[0].value == {"n": 1}


def test_latest_under_racing_publishes_never_returns_nothing(fed: Any) -> None:
    var, driver = fed
    stop = threading.Event()

    def publish() -> None:
        i = 0
        while not stop.is_set():
            driver.error(ErrorCode.NOT_FOUND, f"missing {i}")
            i += 1
            if i == 50:
                driver.value("ok")

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        snap = var.latest(timeout=LONG)
        assert snap.value == "ok"
    finally:
        stop.set()
        thread.join(LONG)


def test_changes_iterators_keep_their_own_cursor(fed: Any) -> None:
    var, driver = fed
    driver.value(1)
    a, b = var.changes(), var.changes()
    assert next(a).value == 1
    driver.value(2)
    assert next(a).value == 2
    assert next(b).value == 2  # b starts at the current state; intermediate 1 dropped
    assert var.watch(timeout=0).value == 2  # watch has its own cursor too
    with pytest.raises(VariableError) as info:
        a.next(timeout=0)
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED


def test_changes_error_modes(fed: Any) -> None:
    var, driver = fed
    raising, skipping, yielding = (
        var.changes(),
        var.changes(errors="skip"),
        var.changes(errors="yield"),
    )
    driver.error(ErrorCode.NOT_FOUND, "missing")
    with pytest.raises(VariableError):
        next(raising)
    item = next(yielding)
    assert isinstance(item, VariableError) and item.code is ErrorCode.NOT_FOUND
    driver.value("v")
    assert next(raising).value == "v"  # still usable after raising
    assert next(skipping).value == "v"
    assert isinstance(next(yielding), Snapshot)


def test_changes_ends_when_closed(fed: Any) -> None:
    var, driver = fed
    driver.value(1)
    seen: list[Any] = []

    def consume() -> list[Any]:
        for snap in var.changes():
            seen.append(snap.value)
        return seen

    thread, out = in_thread(consume)
    wait_until(lambda: seen == [1])
    var.close()
    thread.join(LONG)
    assert out == [[1]]


def test_snapshot_repr_hides_the_value_and_time_is_aware(fed: Any) -> None:
    var, driver = fed
    driver.value("s3cret")
    snap = var.latest()
    assert "s3cret" not in repr(snap)
    assert snap.update_time.tzinfo is not None
    assert "s3cret" not in repr(var)


def test_error_code_mapping() -> None:
    assert error_code(None) is ErrorCode.OK
    assert error_code(asyncio.CancelledError()) is ErrorCode.CANCELED
    assert error_code(TimeoutError()) is ErrorCode.DEADLINE_EXCEEDED
    assert error_code(VariableError(ErrorCode.NOT_FOUND, "x")) is ErrorCode.NOT_FOUND
    assert error_code(RuntimeError()) is ErrorCode.UNKNOWN
    assert [c.value for c in ErrorCode] == list(range(12))


# -- async face ---------------------------------------------------------------------


def test_async_latest_and_watch_wake_from_another_thread(fed: Any) -> None:
    var, driver = fed

    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: threading.Thread(target=driver.value, args=("x",)).start())
        latest = await var.latest_async(timeout=LONG)
        watched = await var.watch_async(timeout=LONG)
        return latest.value, watched.value

    assert asyncio.run(main()) == ("x", "x")


def test_async_timeouts_and_codes(fed: Any) -> None:
    var, driver = fed

    async def main() -> None:
        with pytest.raises(VariableError) as info:
            await var.latest_async(timeout=0.02)
        assert info.value.code is ErrorCode.FAILED_PRECONDITION
        driver.value(1)
        await var.watch_async(timeout=0)
        with pytest.raises(VariableError) as info:
            await var.watch_async(timeout=0.02)
        assert info.value.code is ErrorCode.DEADLINE_EXCEEDED
        assert not var._async_waiters  # timed-out waiters are unregistered

    asyncio.run(main())


def test_async_cancellation_propagates_and_unregisters(fed: Any) -> None:
    var, driver = fed

    async def main() -> None:
        task = asyncio.create_task(var.watch_async())
        await async_wait_until(lambda: len(var._async_waiters) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as info:
            await task
        assert error_code(info.value) is ErrorCode.CANCELED
        assert not var._async_waiters

        # a pending latest_async and a pending changes_async item, cancelled too ...
        latest = asyncio.create_task(var.latest_async())
        changes = var.changes_async()
        item = asyncio.create_task(anext(changes))
        await async_wait_until(lambda: len(var._async_waiters) == 2)
        latest.cancel()
        item.cancel()
        for cancelled in (latest, item):
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        assert not var._async_waiters
        # ... leave the variable, its watch cursor and the iterator fully usable
        driver.value("v1")
        assert (await var.latest_async(timeout=LONG)).value == "v1"
        assert (await var.watch_async(timeout=LONG)).value == "v1"
        assert (await asyncio.wait_for(anext(changes), LONG)).value == "v1"
        driver.value("v2")
        assert (await var.watch_async(timeout=LONG)).value == "v2"
        assert (await asyncio.wait_for(anext(changes), LONG)).value == "v2"
        with pytest.raises(VariableError) as pending:
            var.watch(timeout=0)
        assert pending.value.code is ErrorCode.DEADLINE_EXCEEDED

    asyncio.run(main())


def test_async_changes_for_many_variables_on_one_loop() -> None:
    drivers = [FedDriver() for _ in range(50)]
    variables = [Variable[Any](d, name=f"fed://{i}") for i, d in enumerate(drivers)]
    threads_before = threading.active_count()

    async def consume(var: Variable[Any], want: int) -> list[Any]:
        got = []
        async for snap in var.changes_async():
            got.append(snap.value)
            if snap.value == want:
                break
        return got

    async def main() -> list[list[Any]]:
        tasks = [asyncio.create_task(consume(v, 3)) for v in variables]
        await async_wait_until(lambda: all(len(v._async_waiters) == 1 for v in variables))
        assert threading.active_count() == threads_before  # no thread per waiter

        def feed() -> None:
            for d in drivers:
                d.value(3)

        await asyncio.to_thread(feed)
        return await asyncio.wait_for(asyncio.gather(*tasks), LONG)

    results = asyncio.run(main())
    assert all(r[-1] == 3 for r in results)
    for v in variables:
        v.close()


def test_async_changes_end_on_close_async(fed: Any) -> None:
    var, driver = fed

    async def main() -> list[Any]:
        seen: list[Any] = []

        async def consume() -> None:
            async for item in var.changes_async(errors="yield"):
                seen.append(item)

        task = asyncio.create_task(consume())
        driver.error(ErrorCode.NOT_FOUND, "missing")
        driver.value(1)
        await async_wait_until(lambda: len(seen) >= 1)
        await var.close_async()
        await asyncio.wait_for(task, LONG)
        with pytest.raises(VariableError) as info:
            await var.close_async()
        assert info.value is ERR_CLOSED
        return seen

    seen = asyncio.run(main())
    assert seen and all(isinstance(s, Snapshot | VariableError) for s in seen)
    assert driver.stopped == 1


def test_async_context_manager() -> None:
    driver = FedDriver()

    async def main() -> Variable[Any]:
        async with Variable[Any](driver, name="fed://acm") as var:
            driver.value(5)
            assert (await var.latest_async()).value == 5
        return var

    assert asyncio.run(main()).closed
