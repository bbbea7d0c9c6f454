"""Test helpers for packages: build trees and package files from dicts, publish them
into a local repository, hand-craft malicious zips, and serve a directory over HTTP.

Typical use::

    from helpers_packages import File, Link, build, publish, StaticServer

    hello = {"bin/hello": File("#!/bin/sh\\n", executable=True)}
    pkg_file, iid = build(tmp_path, "tools/hello", hello)
    iid = publish(repo_dir, "tools/hello", {"a.txt": "x"}, refs=["latest"], tags=["version:1"])
    with StaticServer(repo_dir) as server:
        repo = HttpRepository(server.url)
        ...
        assert server.count("/tools/hello/@index.json") == 1
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from caproni_tasks.packages.format import MANIFEST_NAME, build_package


@dataclass(frozen=True)
class File:
    """A regular file in a source tree; ``writable`` sets the owner-write bit."""

    content: bytes | str = b""
    executable: bool = False
    writable: bool = True


@dataclass(frozen=True)
class Link:
    """A symlink in a source tree."""

    target: str


FileSpec = bytes | str | File | Link


def write_tree(root: Path, files: Mapping[str, FileSpec]) -> Path:
    """Create ``root`` with the given files (``name -> content | File | Link``)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, Link):
            os.symlink(spec.target, path)
            continue
        if not isinstance(spec, File):
            spec = File(spec)
        data = spec.content.encode() if isinstance(spec.content, str) else spec.content
        path.write_bytes(data)
        mode = 0o444 | (0o200 if spec.writable else 0) | (0o111 if spec.executable else 0)
        path.chmod(mode)
    return root


_counter = 0
_counter_lock = threading.Lock()


def _fresh(base: Path, stem: str) -> Path:
    global _counter
    with _counter_lock:
        _counter += 1
        return base / f"{stem}-{_counter}"


def build(
    base: Path,
    name: str,
    files: Mapping[str, FileSpec],
    *,
    out: Path | None = None,
    **build_kwargs: Any,
) -> tuple[Path, str]:
    """Write ``files`` into a fresh dir under ``base`` and build package ``name`` from it.

    Returns ``(package file, instance ID)``; ``build_kwargs`` go to `build_package`.
    """
    src = write_tree(_fresh(base, "src"), files)
    out = out or _fresh(base, "pkg").with_suffix(".cipd")
    iid = build_package(src, name, out, **build_kwargs)
    return out, iid


def publish(
    repo_root: Path,
    name: str,
    files: Mapping[str, FileSpec],
    *,
    refs: Iterable[str] = (),
    tags: Sequence[str] = (),
    work_dir: Path | None = None,
    **build_kwargs: Any,
) -> str:
    """Build ``files`` as package ``name`` and register it in the local repository at
    ``repo_root`` with ``refs`` and ``tags``; return the instance ID."""
    from caproni_tasks.packages.backends.directory import LocalRepository

    work = work_dir or repo_root.parent / f".{repo_root.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    pkg, _ = build(work, name, files, **build_kwargs)
    repo = LocalRepository(repo_root)
    iid = repo.register_instance(pkg)
    for ref in refs:
        repo.set_ref(name, ref, iid)
    if tags:
        repo.attach_tags(name, iid, tags)
    pkg.unlink()
    return iid


@dataclass(frozen=True)
class RawEntry:
    """One entry of a hand-made zip: any name, any bytes, any Unix mode."""

    name: str
    data: bytes | str = b""
    mode: int = 0o100644


def manifest_json(name: str, **extra: str) -> str:
    import json

    return json.dumps({"format_version": "1.1", "package_name": name, **extra})


def raw_package(
    path: Path,
    entries: Iterable[RawEntry | tuple[str, bytes | str]],
    *,
    package: str | None = "test/pkg",
    manifest: str | bytes | None = None,
) -> Path:
    """Write a zip exactly as told (for malicious or broken packages).

    A manifest for ``package`` is appended unless ``manifest`` gives its raw text or
    ``package`` is None (no manifest at all).
    """
    with zipfile.ZipFile(path, "w") as archive:
        for item in entries:
            entry = item if isinstance(item, RawEntry) else RawEntry(item[0], item[1])
            info = zipfile.ZipInfo(entry.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = entry.mode << 16
            data = entry.data.encode() if isinstance(entry.data, str) else entry.data
            archive.writestr(info, data)
        if manifest is not None or package is not None:
            text = manifest if manifest is not None else manifest_json(package or "")
            archive.writestr(MANIFEST_NAME, text)
    return path


def symlink_entry(name: str, target: str) -> RawEntry:
    return RawEntry(name, target, 0o120777)


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus the
    # client's delayed ACK cost ~40 ms per kept-alive request (real servers set it).
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _path(self) -> str:
        return unquote(urlsplit(self.path).path)

    def send_head(self) -> Any:
        path = self._path()
        with self.server.lock:
            self.server.requests.append(path)
            self.server.raw_paths.append(self.path)
            self.server.headers.append(dict(self.headers.items()))
            status = self.server.fail_with.get(path)
        if status is not None:
            self.send_error(status)
            return None
        return super().send_head()

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if self.server.drop_idle:
            # Close without saying so, as a server whose keep-alive timeout expired.
            self.close_connection = True

    def copyfile(self, source: Any, outputfile: Any) -> None:
        limit = self.server.truncate.get(self._path())
        if limit is None:
            super().copyfile(source, outputfile)
            return
        outputfile.write(source.read(limit))
        outputfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.raw_paths: list[str] = []
        self.connections = 0
        self.fail_with: dict[str, int] = {}
        self.truncate: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self.drop_idle = False
        root = str(directory)

        def handler(*args: Any, **kwargs: Any) -> _Handler:
            return _Handler(*args, directory=root, **kwargs)

        super().__init__(("127.0.0.1", 0), handler)


class StaticServer:
    """Serve ``directory`` on 127.0.0.1 (ephemeral port) from a background thread.

    Records every request path (``requests``, decoded; ``raw_paths`` as sent) and the
    number of TCP connections. ``fail_with[path] = 503`` answers that status;
    ``truncate[path] = n`` sends the full Content-Length but only ``n`` body bytes;
    ``drop_idle = True`` closes each connection after one response without warning.
    ``headers`` holds the request headers, in order.
    """

    def __init__(self, directory: Path, *, tls: tuple[Path, Path] | None = None) -> None:
        self.directory = Path(directory)
        self._server = _Server(self.directory)
        self.scheme = "http"
        if tls is not None:  # (certificate, key) PEM files
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[str]:
        with self._server.lock:
            return list(self._server.requests)

    @property
    def raw_paths(self) -> list[str]:
        with self._server.lock:
            return list(self._server.raw_paths)

    @property
    def connections(self) -> int:
        with self._server.lock:
            return self._server.connections

    @property
    def headers(self) -> list[dict[str, str]]:
        with self._server.lock:
            return list(self._server.headers)

    @property
    def drop_idle(self) -> bool:
        return self._server.drop_idle

    @drop_idle.setter
    def drop_idle(self, value: bool) -> None:
        self._server.drop_idle = value

    @property
    def fail_with(self) -> dict[str, int]:
        return self._server.fail_with

    @property
    def truncate(self) -> dict[str, int]:
        return self._server.truncate

    def count(self, path: str) -> int:
        return Counter(self.requests)[path]

    def reset(self) -> None:
        with self._server.lock:
            self._server.requests.clear()
            self._server.raw_paths.clear()
            self._server.connections = 0

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> StaticServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 made with the openssl command (1 day)."""
    import subprocess

    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def free_port() -> int:
    """A port with nothing listening on it (for "server down" tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
