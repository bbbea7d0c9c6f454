"""Misbehaving HTTP servers and killed downloads (issue 11, item 6).

Every server here is a plain socket server on 127.0.0.1 in a thread, scripted per
test; every limit is set small so each test ends by itself within a second or two.
Waits for a condition are bounded polls, never a sleep that hopes.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from caproni_tasks.packages.backends import open_repository
from caproni_tasks.packages.backends.static_http import HttpRepository
from caproni_tasks.packages.cache import InstanceCache
from caproni_tasks.packages.format import instance_id_of_file
from caproni_tasks.packages.repository import (
    BackendUnavailableError,
    HashMismatchError,
    NetworkOptions,
    RepositoryError,
)

Handler = Callable[["Conn"], None]


class Conn:
    """One accepted connection: read a request, write raw bytes, wait politely."""

    def __init__(self, sock: socket.socket, server: RawServer) -> None:
        self.sock = sock
        self.server = server
        self._buffer = b""

    def request(self) -> tuple[str, dict[str, str]] | None:
        """The next request's path and headers (None when the client closed)."""
        while b"\r\n\r\n" not in self._buffer:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self._buffer += data
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        with self.server.lock:
            self.server.requests.append(path)
            self.server.headers.append(headers)
        return path, headers

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def respond(
        self, status: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bool:
        fields = {"Content-Length": str(len(body)), **(headers or {})}
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        return self.send(head.encode() + b"\r\n" + body)

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server stops; False once it does (the handler should end)."""
        return not self.server.stopping.wait(seconds)

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class RawServer:
    """Accept on 127.0.0.1 and run ``handler(conn)`` for each connection in a thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.connections = 0
        self.stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def count(self, path: str) -> int:
        with self.lock:
            return self.requests.count(path)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handler(Conn(sock, self))
        with contextlib.suppress(OSError):
            sock.close()

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self.lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def fast(url: str, **overrides: float) -> HttpRepository:
    """A repository with limits small enough for tests."""
    limits: dict[str, float] = {
        "connect_timeout": 1.0,
        "stall_timeout": 0.5,
        "deadline": 5.0,
        "retries": 2,
        "backoff": 0.01,
    }
    limits.update(overrides)
    return HttpRepository(
        url,
        connect_timeout=limits["connect_timeout"],
        stall_timeout=limits["stall_timeout"],
        deadline=limits["deadline"],
        retries=int(limits["retries"]),
        backoff=limits["backoff"],
    )


def blob(tmp_path: Path, data: bytes) -> str:
    """The instance ID of ``data`` (the repository only checks the hash)."""
    path = tmp_path / f"blob-{len(data)}-{hash(data) & 0xFFFF}"
    path.write_bytes(data)
    return instance_id_of_file(path)


def index_json(package: str, iid: str) -> bytes:
    return json.dumps(
        {
            "format": 1,
            "package": package,
            "instances": [{"instance_id": iid, "registered_at": "2026-01-01T00:00:00Z", "size": 1}],
            "refs": {"latest": iid},
            "tags": {},
        }
    ).encode()


def serve_files(files: dict[str, bytes], extra: dict[str, str] | None = None) -> Handler:
    """A keep-alive handler answering from ``files`` (404 otherwise)."""

    def handle(conn: Conn) -> None:
        while (got := conn.request()) is not None:
            path = got[0]
            if path in files:
                ok = conn.respond("200 OK", files[path], extra)
            else:
                ok = conn.respond("404 Not Found")
            if not ok:
                return

    return handle


def elapsed(fn: Callable[[], object]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        fn()
    except BaseException as error:
        return time.monotonic() - start, error
    return time.monotonic() - start, None


# --- time limits -------------------------------------------------------------------------


def test_accept_and_never_answer_hits_the_stall_limit(
    serve: Callable[[Handler], RawServer],
) -> None:
    def silent(conn: Conn) -> None:
        conn.request()
        conn.wait(30)

    server = serve(silent)
    repo = fast(server.url, stall_timeout=0.3, retries=0)
    took, error = elapsed(lambda: repo.resolve_version("a/b", "latest"))
    assert isinstance(error, BackendUnavailableError)
    assert str(error) == f"timed out: no bytes for 0.3 s from {server.url}/a/b/@index.json"
    assert took < 2


def test_stalls_are_retried_within_the_deadline(serve: Callable[[Handler], RawServer]) -> None:
    def silent(conn: Conn) -> None:
        conn.request()
        conn.wait(30)

    server = serve(silent)
    repo = fast(server.url, stall_timeout=0.3, deadline=1.0, retries=10)
    took, error = elapsed(lambda: repo.resolve_version("a/b", "latest"))
    assert isinstance(error, BackendUnavailableError)
    assert "timed out" in str(error) and f"{server.url}/a/b/@index.json" in str(error)
    assert 0.5 < took < 2  # several attempts, all inside the deadline
    assert server.count("/a/b/@index.json") >= 2


def test_a_trickled_body_hits_the_deadline(
    serve: Callable[[Handler], RawServer], tmp_path: Path
) -> None:
    def trickle(conn: Conn) -> None:
        conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while conn.wait(0.2) and conn.send(b"x"):
            pass

    server = serve(trickle)
    iid = blob(tmp_path, b"x" * 1000)
    repo = fast(server.url, stall_timeout=0.5, deadline=1.0)
    dest = tmp_path / "dl" / "x"
    took, error = elapsed(lambda: repo.fetch_instance("a/b", iid, dest))
    url = repo.instance_url("a/b", iid)
    assert isinstance(error, BackendUnavailableError)
    assert str(error) == f"timed out: deadline of 1 s reached for {url}"
    assert 0.9 < took < 2
    assert server.count(f"/a/b/@instances/{iid}") == 1  # no time left for a retry
    assert list(dest.parent.iterdir()) == []


def test_slowloris_headers_hit_the_deadline(serve: Callable[[Handler], RawServer]) -> None:
    def slow_headers(conn: Conn) -> None:
        conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\n")
        while conn.wait(0.1) and conn.send(b"X-Slow: y\r\n"[:1]):
            pass

    server = serve(slow_headers)
    repo = fast(server.url, stall_timeout=0.5, deadline=1.0)
    took, error = elapsed(lambda: repo.resolve_version("a/b", "latest"))
    assert isinstance(error, BackendUnavailableError)
    assert str(error).startswith("timed out: deadline of 1 s reached for ")
    assert took < 2


def test_connect_timeout(serve: Callable[[Handler], RawServer]) -> None:
    # A listener whose accept queue is full drops further SYNs: connect never completes.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        repo = fast(f"http://127.0.0.1:{port}", connect_timeout=0.3, retries=0)
        took, error = elapsed(lambda: repo.resolve_version("a/b", "latest"))
        assert isinstance(error, BackendUnavailableError)
        if "could not connect" not in str(error):
            pytest.skip(f"this kernel completed the connection: {error}")
        assert str(error) == (
            f"timed out: could not connect within 0.3 s to http://127.0.0.1:{port}/a/b/@index.json"
        )
        assert took < 2
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# --- broken answers ----------------------------------------------------------------------


def test_short_body_is_truncation_and_is_retried(
    serve: Callable[[Handler], RawServer], tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    iid = blob(tmp_path, data)
    attempts = []

    def short_once(conn: Conn) -> None:
        while conn.request() is not None:
            attempts.append(1)
            if len(attempts) == 1:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 50100\r\n\r\n" + data)
                return  # closes: 100 bytes short
            conn.respond("200 OK", data)

    server = serve(short_once)
    dest = tmp_path / "x"
    fast(server.url).fetch_instance("a/b", iid, dest)
    assert instance_id_of_file(dest) == iid
    assert len(attempts) == 2

    def always_short_handler(conn: Conn) -> None:
        conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 50100\r\n\r\n" + data)

    always_short = serve(always_short_handler)
    with pytest.raises(
        BackendUnavailableError, match=r"truncated download of .*: got 50000 of 50100 bytes"
    ):
        fast(always_short.url, retries=1).fetch_instance("a/b", iid, dest.with_name("y"))
    assert always_short.count(f"/a/b/@instances/{iid}") == 2


def test_connection_reset_mid_body_is_retried(
    serve: Callable[[Handler], RawServer], tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    iid = blob(tmp_path, data)

    def reset_once(conn: Conn) -> None:
        while conn.request() is not None:
            if conn.server.connections == 1:
                conn.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode())
                conn.send(data[:30_000])
                conn.reset()
                return
            conn.respond("200 OK", data)

    server = serve(reset_once)
    dest = tmp_path / "x"
    fast(server.url).fetch_instance("a/b", iid, dest)
    assert instance_id_of_file(dest) == iid
    assert server.count(f"/a/b/@instances/{iid}") == 2


@pytest.mark.parametrize(
    ("first", "retried"), [("503 Service Unavailable", True), ("500 Oops", False)]
)
def test_only_502_503_504_are_retried(
    serve: Callable[[Handler], RawServer], tmp_path: Path, first: str, retried: bool
) -> None:
    index = index_json("a/b", blob(tmp_path, b"v"))

    def fail_once(conn: Conn) -> None:
        while conn.request() is not None:
            if len(conn.server.requests) == 1:
                conn.respond(first, b"busy")
            else:
                conn.respond("200 OK", index)

    server = serve(fail_once)
    repo = fast(server.url)
    if retried:
        assert repo.resolve_version("a/b", "latest")
        assert server.count("/a/b/@index.json") == 2
    else:
        with pytest.raises(BackendUnavailableError, match=r"@index\.json: HTTP 500 Oops$"):
            repo.resolve_version("a/b", "latest")
        assert server.count("/a/b/@index.json") == 1


def test_a_redirect_loop_is_an_error(serve: Callable[[Handler], RawServer]) -> None:
    def loop(conn: Conn) -> None:
        while (got := conn.request()) is not None:
            conn.respond("302 Found", headers={"Location": got[0]})

    server = serve(loop)
    with pytest.raises(BackendUnavailableError, match=r"@index\.json: more than 5 redirects"):
        fast(server.url).resolve_version("a/b", "latest")
    assert server.count("/a/b/@index.json") == 6  # not retried


@pytest.mark.parametrize("declared", [True, False])
def test_an_index_over_the_size_limit_is_refused(
    serve: Callable[[Handler], RawServer], declared: bool
) -> None:
    def huge(conn: Conn) -> None:
        conn.request()
        if declared:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n{")
        else:  # chunked: no size up front, counted while reading
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while conn.send(b"1000\r\n" + b" " * 0x1000 + b"\r\n"):
                pass

    server = serve(huge)
    repo = HttpRepository(server.url, max_index_bytes=100_000, retries=0)
    with pytest.raises(BackendUnavailableError, match=r"@index\.json: larger than 100000 bytes"):
        repo.resolve_version("a/b", "latest")


def test_a_non_json_index_is_one_line(serve: Callable[[Handler], RawServer]) -> None:
    server = serve(serve_files({"/a/b/@index.json": b"<html>\n<p>Hello</p>\n</html>\n"}))
    with pytest.raises(RepositoryError) as caught:
        fast(server.url).resolve_version("a/b", "latest")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"corrupt package index {server.url}/a/b/@index.json")


def test_server_closing_at_once_is_a_connection_error_naming_the_url(
    serve: Callable[[Handler], RawServer],
) -> None:
    server = serve(lambda conn: None)  # accept, then close
    with pytest.raises(BackendUnavailableError) as caught:
        fast(server.url, retries=0).resolve_version("a/b", "latest")
    assert str(caught.value).startswith(f"cannot reach {server.url}/a/b/@index.json: ")


def test_a_hash_mismatch_leaves_nothing_in_the_cache(
    serve: Callable[[Handler], RawServer], tmp_path: Path
) -> None:
    iid = blob(tmp_path, b"the real bytes")
    server = serve(serve_files({f"/a/b/@instances/{iid}": b"other bytes"}))
    cache = InstanceCache(tmp_path / "cache")
    with pytest.raises(HashMismatchError, match=iid):
        cache.get(fast(server.url), "a/b", iid)
    assert list((tmp_path / "cache").iterdir()) == []
    assert server.count(f"/a/b/@instances/{iid}") == 1  # a mismatch is not retried


def test_gzip_content_encoding_is_hashed_as_sent(
    serve: Callable[[Handler], RawServer], tmp_path: Path
) -> None:
    sent = gzip.compress(b"a package file stored gzipped" * 100)
    iid = blob(tmp_path, sent)
    server = serve(
        serve_files({f"/a/b/@instances/{iid}": sent}, extra={"Content-Encoding": "gzip"})
    )
    dest = tmp_path / "x"
    fast(server.url).fetch_instance("a/b", iid, dest)
    assert dest.read_bytes() == sent
    assert server.headers[-1]["accept-encoding"] == "identity"


def test_a_gzipped_index_is_decoded(serve: Callable[[Handler], RawServer], tmp_path: Path) -> None:
    iid = blob(tmp_path, b"v")
    server = serve(
        serve_files(
            {"/a/b/@index.json": gzip.compress(index_json("a/b", iid))},
            extra={"Content-Encoding": "gzip"},
        )
    )
    assert fast(server.url).resolve_version("a/b", "latest") == iid


# --- settings ----------------------------------------------------------------------------


def test_settings_reach_the_repository() -> None:
    from invoke.config import Config
    from invoke.context import Context

    from caproni_tasks.tasks._common import DEFAULTS, network_options

    defaults = NetworkOptions()
    assert DEFAULTS["http_connect_timeout"] == defaults.connect_timeout
    assert DEFAULTS["http_stall_timeout"] == defaults.stall_timeout
    assert DEFAULTS["http_deadline"] == defaults.deadline
    assert DEFAULTS["http_retries"] == defaults.retries
    c = Context(Config(overrides={"caproni": {"http_deadline": "7", "http_retries": 0}}))
    options = network_options(c)
    assert options.cache_dir is not None  # where a CIPD service's tags are remembered
    assert replace(options, cache_dir=None) == NetworkOptions(deadline=7.0, retries=0)
    repo = open_repository("http://127.0.0.1:1/r", network=options)
    assert isinstance(repo, HttpRepository)
    assert (repo.connect_timeout, repo.stall_timeout, repo.deadline, repo.retries) == (
        10.0,
        30.0,
        7.0,
        0,
    )
    from invoke.exceptions import Exit

    with pytest.raises(Exit, match=r"caproni\.http_stall_timeout must be a positive number"):
        network_options(Context(Config(overrides={"caproni": {"http_stall_timeout": -1}})))


# --- abandoned temporary files -----------------------------------------------------------

_DOWNLOAD_SCRIPT = """
import sys
from pathlib import Path
from caproni_tasks.packages.cache import InstanceCache
from caproni_tasks.packages.backends.static_http import HttpRepository
InstanceCache(Path(sys.argv[1])).get(HttpRepository(sys.argv[2]), "a/b", sys.argv[3])
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_a_killed_download_is_cleaned_up_but_not_a_live_one(
    serve: Callable[[Handler], RawServer], tmp_path: Path
) -> None:
    data = {name: os.urandom(100_000) for name in ("killed", "live", "other")}
    iids = {name: blob(tmp_path, body) for name, body in data.items()}
    paths = {f"/a/b/@instances/{iids[name]}": body for name, body in data.items()}
    release = threading.Event()

    def handler(conn: Conn) -> None:
        while (got := conn.request()) is not None:
            body = paths[got[0]]
            if got[0] == f"/a/b/@instances/{iids['other']}":
                conn.respond("200 OK", body)
                continue
            # Half the body, then hold until released (or the server stops).
            conn.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            conn.send(body[:50_000])
            while not release.is_set() and conn.wait(0.02):
                pass
            conn.send(body[50_000:])

    server = serve(handler)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()

    def temps() -> set[str]:
        return {name for name in os.listdir(cache_dir) if name.startswith(".")}

    child = subprocess.Popen(
        [sys.executable, "-c", _DOWNLOAD_SCRIPT, str(cache_dir), server.url, iids["killed"]],
    )
    try:
        wait_for(lambda: any(n.endswith(".part") for n in temps()), "the child's temp file")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    killed = temps()
    assert any(name.endswith(".part") for name in killed)

    live_cache = InstanceCache(cache_dir)
    live_error: list[BaseException] = []

    def live_download() -> None:
        try:
            live_cache.download(HttpRepository(server.url), "a/b", iids["live"])
        except BaseException as error:
            live_error.append(error)

    live = threading.Thread(target=live_download)
    live.start()
    try:
        wait_for(lambda: len(temps() - killed) >= 2, "the live download's temp files")
        running = temps() - killed
        # The next run (a new cache object) downloads something else: the killed
        # download's files go, whatever their age; the live one's stay.
        InstanceCache(cache_dir).get(fast(server.url), "a/b", iids["other"])
        assert temps() & killed == set()
        assert running <= temps()
    finally:
        release.set()
        live.join(timeout=10)
    assert not live_error
    assert instance_id_of_file(cache_dir / iids["live"]) == iids["live"]
    assert temps() == set()
