"""Runtime variables: a process starts once its variables have values, restarts with
the new value when one changes, and never has a variable's value logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_processes import (
    CapturedOutput,
    anyio_backend,
    async_wait_until,
    fast_options,
    spec,
    stays_false,
    supervising,
    write_atomic,
)

from caproni_tasks.config.model import ProcessRef, RuntimeVarSpec
from caproni_tasks.reloader.supervisor import ProcessState, Supervisor
from caproni_tasks.reloader.variables import VariableHub, value_text

pytestmark = [pytest.mark.timeout(60)]
__all__ = ["anyio_backend"]


def test_value_text() -> None:
    assert value_text("x") == "x"
    assert value_text(b"caf\xc3\xa9") == "café"
    assert value_text({"b": 1, "a": [True]}) == '{"a":[true],"b":1}'


def _supervisor(tmp_path: Path, decoder: str = "string") -> tuple[Supervisor, VariableHub]:
    url = f"file://./greeting.txt?decoder={decoder}"
    hub = VariableHub({"greeting": RuntimeVarSpec("greeting", url, tmp_path)})
    return Supervisor(output=CapturedOutput(), options=fast_options(), variables=hub), hub


def _greeter(tmp_path: Path) -> list:  # type: ignore[type-arg]
    return [
        spec(
            "greeter",
            'echo "GOT=$GREETING"; echo "ARG=${runtimevar:greeting}"; exec sleep 300',
            tmp_path,
            env={"GREETING": "${runtimevar:greeting}"},
            runtimevars=frozenset({"greeting"}),
        )
    ]


@pytest.mark.anyio
async def test_change_restarts_with_the_new_value(tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_text("s3cret-one")
    sup, hub = _supervisor(tmp_path)
    try:
        async with supervising("r", _greeter(tmp_path), supervisor=sup) as (_, out, _task):
            assert isinstance(out, CapturedOutput)
            await async_wait_until(lambda: out.exact("greeter", "GOT=s3cret-one") == 1)
            assert out.exact("greeter", "ARG=s3cret-one") == 1
            write_atomic(tmp_path / "greeting.txt", "s3cret-two")
            await async_wait_until(lambda: out.exact("greeter", "GOT=s3cret-two") == 1)
            assert out.exact("greeter", "ARG=s3cret-two") == 1
            assert "runtime variable greeting changed: restarting" in out.text
            # Same bytes again: no new state, no restart.
            (tmp_path / "greeting.txt").write_text("s3cret-two")
            assert await stays_false(lambda: out.count("greeter", "GOT=") > 2, 0.6)
            events = [line for line in out.text.splitlines() if " | :: " in line]
            assert not any("s3cret" in line for line in events)  # values are never logged
    finally:
        await hub.close()


@pytest.mark.anyio
async def test_process_waits_for_a_first_value(tmp_path: Path) -> None:
    sup, hub = _supervisor(tmp_path)
    messages: list[str] = []
    hub.on_error = lambda name, message: messages.append(message)
    try:
        async with supervising("r", _greeter(tmp_path), supervisor=sup) as (_, out, _task):
            assert isinstance(out, CapturedOutput)
            process = sup.processes[ProcessRef("r", "greeter")]
            await async_wait_until(lambda: "waiting for a value of runtime variable" in out.text)
            assert process.state == ProcessState.WAITING and process.pid is None
            # The missing file is reported as such, with no "last good value" to keep.
            await async_wait_until(lambda: messages)
            assert "does not exist" in messages[0]
            assert messages[0].endswith(
                "(the processes that use it wait until it has a good value)"
            )
            (tmp_path / "greeting.txt").write_text("late")
            await async_wait_until(lambda: out.exact("greeter", "GOT=late") == 1)
    finally:
        await hub.close()


@pytest.mark.anyio
async def test_bad_value_keeps_the_last_good_one_without_restart(tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_text('{"v": 1}')
    sup, hub = _supervisor(tmp_path, decoder="jsonmap")
    reported: list[str] = []
    messages: list[str] = []

    def on_error(name: str, message: str) -> None:
        reported.append(name)
        messages.append(message)

    hub.on_error = on_error
    try:
        async with supervising("r", _greeter(tmp_path), supervisor=sup) as (_, out, _task):
            assert isinstance(out, CapturedOutput)
            await async_wait_until(lambda: out.exact("greeter", 'GOT={"v":1}') == 1)
            write_atomic(tmp_path / "greeting.txt", "{not json")
            await async_wait_until(lambda: reported == ["greeting"])
            assert messages[0].endswith("(keeping its last good value)")
            assert await stays_false(lambda: out.count("greeter", "GOT=") > 1, 0.5)
            write_atomic(tmp_path / "greeting.txt", '{"v": 2}')
            await async_wait_until(lambda: out.exact("greeter", 'GOT={"v":2}') == 1)
    finally:
        await hub.close()
