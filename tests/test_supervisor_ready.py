"""Readiness checks (tcp, http, log) and depends_on gating."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from helpers_processes import PY, anyio_backend, async_wait_until, spec, supervising

from caproni_tasks.config.model import ProcessRef, ReadyCheck
from caproni_tasks.reloader.supervisor import ProcessState

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]
__all__ = ["anyio_backend"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listen_after_gate(port: int, gate: Path) -> str:
    """A server that opens its port only once ``gate`` exists."""
    code = (
        "import os, socket, time\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen()\n"
        "print('listening', flush=True)\n"
        "while True: s.accept()[0].close()\n"
    )
    return f"{PY} -c {_quote(code)}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


async def test_dependant_waits_for_tcp_readiness(tmp_path: Path) -> None:
    port = free_port()
    gate = tmp_path / "gate"
    server = spec("db", _listen_after_gate(port, gate), tmp_path, ready=ReadyCheck(tcp=port))
    client = spec(
        "app", "echo app-up; exec sleep 300", tmp_path, depends_on=(ProcessRef("r", "db"),)
    )
    async with supervising("r", [server, client]) as (sup, out, _):
        db = sup.processes[ProcessRef("r", "db")]
        app = sup.processes[ProcessRef("r", "app")]
        await async_wait_until(lambda: db.state == ProcessState.STARTING)
        # The port is closed: the dependant must not start, whatever the time.
        await async_wait_until(lambda: "waiting for db to be ready" in out.text)
        assert app.pid is None and app.state == ProcessState.WAITING
        gate.write_text("")
        await async_wait_until(lambda: out.exact("app", "app-up") == 1)
        assert db.state == ProcessState.READY
        text = out.text
        assert text.index("ready (tcp port") < text.index("app-up")


async def test_http_readiness(tmp_path: Path) -> None:
    port = free_port()
    command = f"exec {PY} -m http.server {port} --bind 127.0.0.1"
    server = spec("web", command, tmp_path, ready=ReadyCheck(http=f"http://127.0.0.1:{port}/"))
    async with supervising("r", [server]) as (sup, out, _):
        web = sup.processes[ProcessRef("r", "web")]
        await async_wait_until(lambda: web.state == ProcessState.READY)
        assert f"ready (http http://127.0.0.1:{port}/)" in out.text


async def test_log_readiness_gates_dependant(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    worker = spec(
        "worker",
        f"echo booting; while [ ! -f {gate} ]; do sleep 0.02; done; echo 'READY at 1'; "
        "exec sleep 300",
        tmp_path,
        ready=ReadyCheck(log=r"READY at \d+"),
    )
    after = spec(
        "after", "echo go; exec sleep 300", tmp_path, depends_on=(ProcessRef("r", "worker"),)
    )
    async with supervising("r", [worker, after]) as (_sup, out, _):
        await async_wait_until(lambda: out.exact("worker", "booting") == 1)
        assert out.exact("after", "go") == 0
        gate.write_text("")
        await async_wait_until(lambda: out.exact("after", "go") == 1)


async def test_dependency_outside_the_session_is_not_waited_for(tmp_path: Path) -> None:
    lone = spec("lone", "echo hi; exec sleep 300", tmp_path, depends_on=(ProcessRef("x", "y"),))
    async with supervising("r", [lone]) as (_sup, out, _):
        await async_wait_until(lambda: out.exact("lone", "hi") == 1)
        assert "not part of this session" in out.text


async def test_dependants_stop_before_their_dependencies(tmp_path: Path) -> None:
    base = spec("base", "exec sleep 300", tmp_path)
    top = spec("top", "exec sleep 300", tmp_path, depends_on=(ProcessRef("r", "base"),))
    async with supervising("r", [base, top]) as (sup, out, _):
        top_p = sup.processes[ProcessRef("r", "top")]
        await async_wait_until(lambda: top_p.state == ProcessState.READY)
    top_stop = re.search(r"^top\s+\| :: stopped", out.text, re.M)
    base_stop = re.search(r"^base\s+\| :: stopped", out.text, re.M)
    assert top_stop and base_stop and top_stop.start() < base_stop.start()


@pytest.mark.parametrize("kind", ["tcp", "http"])
async def test_a_process_that_dies_while_its_readiness_is_polled_is_noticed(
    tmp_path: Path, kind: str
) -> None:
    """The exit wins over a readiness poll that is cancelled as it fails (on Python 3.11
    `wait_for` swallowed that cancellation: the poll ran on and the exit went unseen)."""
    port = free_port()
    check = ReadyCheck(tcp=port) if kind == "tcp" else ReadyCheck(http=f"http://127.0.0.1:{port}/")
    specs = [
        spec(f"p{i}", "exit 3", tmp_path, max_restarts=2, ready=check, restart="on-failure")
        for i in range(6)
    ]
    async with supervising("r", specs) as (sup, out, task):
        await async_wait_until(
            lambda: all(p.state == ProcessState.FAILED for p in sup.processes.values())
        )
        assert all(p.restarts == 2 for p in sup.processes.values()), out.text
        # Every process ended for good and nothing can restart them: supervise returns.
        await async_wait_until(task.done)


async def test_dependants_of_a_dependency_that_failed_for_good_give_up(tmp_path: Path) -> None:
    """a -> b -> c with a crashing for good: b and c say why they will not start, and
    the supervision ends instead of waiting forever."""
    a = spec("a", "echo a-start; exit 1", tmp_path, max_restarts=1, ready=ReadyCheck(tcp=1))
    b = spec("b", "echo b-up; exec sleep 300", tmp_path, depends_on=(ProcessRef("r", "a"),))
    c = spec("c", "echo c-up; exec sleep 300", tmp_path, depends_on=(ProcessRef("r", "b"),))
    async with supervising("r", [a, b, c]) as (sup, out, task):
        await async_wait_until(task.done)
        states = {p.spec.name: p.state for p in sup.processes.values()}
        assert states == {n: ProcessState.FAILED for n in "abc"}, out.text
        assert out.count("b", "not starting: a failed (exit 1); it will not restart") == 1
        assert out.count("c", "not starting: b failed without starting") == 1
        assert "b-up" not in out.text and "c-up" not in out.text


async def test_a_one_shot_dependency_that_exited_0_lets_its_dependants_start(
    tmp_path: Path,
) -> None:
    job = spec("migrate", "echo migrated", tmp_path, restart="never", ready=ReadyCheck(log="nope"))
    app = spec(
        "app", "echo app-up; exec sleep 300", tmp_path, depends_on=(ProcessRef("r", "migrate"),)
    )
    async with supervising("r", [job, app]) as (sup, out, _):
        await async_wait_until(lambda: out.exact("app", "app-up") == 1)
        assert sup.processes[ProcessRef("r", "migrate")].state == ProcessState.EXITED


async def test_a_busy_port_is_reported_once_before_start(tmp_path: Path) -> None:
    """Another program already on the checked port: the readiness check would pass for
    it, so the supervisor says so (once per streak, not at every crash restart)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        check = ReadyCheck(http=f"http://localhost:{port}/health")
        crashing = spec("srv", "echo srv-run; exit 1", tmp_path, max_restarts=2, ready=check)
        async with supervising("r", [crashing]) as (_sup, out, task):
            await async_wait_until(task.done)
            assert out.count("srv", "srv-run") == 3
            assert out.count("srv", f"port {port} is already in use by another program") == 1
