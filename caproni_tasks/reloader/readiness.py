"""Is a started process ready to serve? Polls a TCP port or an HTTP URL, or waits for a
log line — replacing the sleep-and-poll scripts users write for ``depends_on``."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caproni_tasks.config.model import ReadyCheck

__all__ = [
    "LogMatcher",
    "describe",
    "http_ok",
    "local_port",
    "port_in_use",
    "tcp_open",
    "wait_ready",
]

POLL_INTERVAL = 0.1


def describe(check: ReadyCheck) -> str:
    if check.tcp is not None:
        return f"tcp port {check.tcp}"
    if check.http is not None:
        return f"http {check.http}"
    return f"log /{check.log}/"


def local_port(check: ReadyCheck) -> int | None:
    """The port of this machine that the check polls (None for a log check or a remote
    URL): something else listening there would pass the check for the process."""
    if check.tcp is not None:
        return check.tcp
    if check.http is not None:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(check.http)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        if (parts.hostname or "").lower() in ("localhost", "127.0.0.1", "::1"):
            return port
    return None


async def port_in_use(check: ReadyCheck) -> int | None:
    """The check's local port when it already accepts connections (before the process
    started), else None."""
    port = local_port(check)
    if port is not None and await tcp_open(port, timeout=0.5):
        return port
    return None


async def tcp_open(port: int, *, timeout: float = 1.0) -> bool:
    """True when something accepts connections on the port of this machine (IPv4 or v6)."""
    for host in ("127.0.0.1", "::1"):
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def _http_status(url: str, timeout: float) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection.request("GET", path, headers={"User-Agent": "caproni-tasks readiness"})
        return connection.getresponse().status
    finally:
        connection.close()


async def http_ok(url: str, *, timeout: float = 2.0) -> bool:
    """True when a GET answers 2xx or 3xx (redirects are not followed: a redirect means
    the server is up)."""
    try:
        status = await asyncio.to_thread(_http_status, url, timeout)
    except (OSError, ValueError, Exception):
        return False
    return 200 <= status < 400


class LogMatcher:
    """Sets `matched` when an output line matches the pattern (the output reader feeds it)."""

    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern)
        self.matched = asyncio.Event()

    def feed(self, line: bytes) -> None:
        if not self.matched.is_set() and self.regex.search(line.decode("utf-8", "replace")):
            self.matched.set()


async def wait_ready(check: ReadyCheck, log: LogMatcher | None) -> None:
    """Return once the check passes; runs until cancelled otherwise."""
    if check.log is not None:
        if log is None:
            raise ValueError("a log readiness check needs the process's LogMatcher")
        await log.matched.wait()
        return
    while True:
        if check.tcp is not None:
            if await tcp_open(check.tcp):
                return
        elif check.http is not None:
            if await http_ok(check.http):
                return
        else:
            return
        await asyncio.sleep(POLL_INTERVAL)
