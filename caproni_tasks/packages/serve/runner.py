"""Running the application under uvicorn: in the foreground (the task) or in a thread.

The listening socket is bound here, before uvicorn starts, so port 0 picks a free port
whose number is known at once, and the service URL is announced only once uvicorn
accepts connections. In the foreground SIGINT and SIGTERM stop the server gracefully
and the call returns (uvicorn would re-raise the signal afterwards; we exit cleanly).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Self

import uvicorn

from caproni_tasks.packages.serve.app import ServeConfig, create_app

__all__ = ["BackgroundServer", "bind", "serve_forever", "service_url"]

_STARTUP_POLL = 0.01


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), ready for uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def service_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling (we stop it ourselves)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _uvicorn(config: ServeConfig) -> _Server:
    app = create_app(config)
    return _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    )


async def _run(server: _Server, sock: socket.socket, on_listening: Callable[[str], None]) -> None:
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(_STARTUP_POLL)
    if server.started:
        on_listening(service_url(sock))
    await serving


def serve_forever(
    config: ServeConfig, sock: socket.socket, on_listening: Callable[[str], None]
) -> None:
    """Serve on ``sock`` until SIGINT or SIGTERM (a second SIGINT stops at once)."""
    server = _uvicorn(config)

    def stop(signum: int, frame: object) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(_run(server, sock, on_listening))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


class BackgroundServer:
    """The server in a daemon thread on 127.0.0.1 (port 0: a free one); for tests and
    embedding. ``with BackgroundServer(config) as server: server.url``."""

    def __init__(self, config: ServeConfig, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self._sock = bind(host, port)
        self.url = service_url(self._sock)
        self._server = _uvicorn(config)
        self._listening = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="pkg-serve", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(_run(self._server, self._sock, lambda _url: self._listening.set()))
        except BaseException as error:  # reported by start()
            self._error = error
        finally:
            self._listening.set()

    def start(self, timeout: float = 30.0) -> Self:
        self._thread.start()
        if not self._listening.wait(timeout) or not self._server.started:
            self.stop()
            raise RuntimeError(f"the server did not start within {timeout} s: {self._error!r}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
