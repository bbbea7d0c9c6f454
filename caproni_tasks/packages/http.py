"""A read-only repository served over HTTP(S) by any static web server or bucket.

The layout is the local one (`caproni_tasks.packages.local`), so ``python -m
http.server`` in a repository directory is a working server. Each package's
``@index.json`` is fetched at most once per `HttpRepository` object (one request per
package however many versions are resolved, from however many threads). Instance
files stream to disk in chunks with the hash checked as they arrive. Connections are
kept alive and reused, one per thread and host.

Only the standard library is used: a repository needs plain GETs, and ``http.client``
gives keep-alive and streaming without a dependency. Proxies from the usual
``http_proxy``/``https_proxy``/``no_proxy`` variables are honoured; credentials in the
URL (``https://user:token@host/repo``) are sent as HTTP basic auth.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit

from caproni_tasks.packages.local import (
    INDEX_FILE,
    INSTANCES_DIR,
    PackageIndex,
    check_package_name,
    copy_verified,
)
from caproni_tasks.packages.repository import (
    BackendUnavailableError,
    InstanceNotFoundError,
    PackageDescription,
    PackageNotFoundError,
    RepositoryError,
)

if TYPE_CHECKING:
    from http.client import HTTPConnection, HTTPResponse

__all__ = ["HttpRepository"]

_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_NOT_FOUND = (404, 410)
_RETRYABLE = (502, 503, 504)
_MAX_INDEX_BYTES = 64 << 20
_USER_AGENT = "caproni-tasks"


_T = TypeVar("_T")
_Key = tuple[str, str, int | None]  # scheme, host, port: one kept-alive connection each


class _Retryable(BackendUnavailableError):
    """A failure worth another attempt (connection trouble, 502/503/504, truncation)."""


class HttpRepository:
    """The repository at ``url`` (``http://`` or ``https://``), read only.

    ``timeout`` bounds each connect and each read (seconds); ``retries`` is how many
    more attempts a request gets after a connection error, a truncated body or a
    502/503/504 answer (with a short backoff). Thread safe.
    """

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 2) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port  # urllib checks the port only when asked
        except ValueError as error:
            raise RepositoryError(f"bad repository URL {url!r}: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise RepositoryError(f"not an HTTP(S) repository URL: {url!r}")
        self._auth: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if port is not None:
            netloc += f":{port}"
        # Keep existing %-escapes, encode what may not appear raw (spaces, non-ASCII).
        path = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=~")
        self._base = f"{scheme}://{netloc}{path}"
        self.timeout = timeout
        self.retries = retries
        self._local = threading.local()
        self._lock = threading.Lock()
        self._package_locks: dict[str, threading.Lock] = {}
        self._indexes: dict[str, PackageIndex | PackageNotFoundError] = {}
        self._all_connections: list[HTTPConnection] = []

    @property
    def url(self) -> str:
        """The base URL (without credentials)."""
        return self._base

    def __repr__(self) -> str:
        return f"HttpRepository({self._base!r})"

    # URLs

    def package_url(self, package: str) -> str:
        check_package_name(package)
        return self._base + "/" + "/".join(_segment(part) for part in package.split("/"))

    def index_url(self, package: str) -> str:
        return f"{self.package_url(package)}/{_segment(INDEX_FILE)}"

    def instance_url(self, package: str, instance_id: str) -> str:
        return f"{self.package_url(package)}/{_segment(INSTANCES_DIR)}/{_segment(instance_id)}"

    # Repository

    def read_index(self, package: str) -> PackageIndex:
        """The package's index, fetched once and remembered (a missing package too)."""
        check_package_name(package)
        with self._lock:
            package_lock = self._package_locks.setdefault(package, threading.Lock())
        with package_lock:
            cached = self._indexes.get(package)
            if cached is None:
                cached = self._fetch_index(package)
                self._indexes[package] = cached
        if isinstance(cached, PackageNotFoundError):
            raise PackageNotFoundError(str(cached))
        return cached

    def known_size(self, package: str, instance_id: str) -> int | None:
        """The instance file's size if this object already read the package's index.

        Never makes a request: with a versions file the index is not fetched at all,
        and a progress bar is not worth one.
        """
        with self._lock:
            cached = self._indexes.get(package)
        return cached.size_of(instance_id) if isinstance(cached, PackageIndex) else None

    def _fetch_index(self, package: str) -> PackageIndex | PackageNotFoundError:
        url = self.index_url(package)

        def attempt() -> PackageIndex | PackageNotFoundError:
            found = self._get(url)
            if found is None:
                return PackageNotFoundError(f'no such package "{package}" in {self._base}')
            response, key = found
            with _Closing(self, response, key):
                raw = _read_body(response, url, _MAX_INDEX_BYTES)
            return PackageIndex.from_json(raw, package=package, source=url)

        return self._with_retries(attempt)

    def resolve_version(self, package: str, version: str) -> str:
        return self.read_index(package).resolve(version, where=self._base)

    def describe(self, package: str) -> PackageDescription:
        return self.read_index(package).describe()

    def fetch_instance(
        self,
        package: str,
        instance_id: str,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        url = self.instance_url(package, instance_id)
        dest = Path(dest)

        def attempt() -> None:
            found = self._get(url)
            if found is None:
                dest.unlink(missing_ok=True)
                raise InstanceNotFoundError(
                    f'no such instance "{instance_id}" of package "{package}" at {url}'
                )
            response, key = found
            with _Closing(self, response, key):
                copy_verified(
                    _ResponseReader(response, url),
                    dest,
                    instance_id,
                    origin=url,
                    progress=progress,
                    expected_size=response.length,
                )

        self._with_retries(attempt)

    def close(self) -> None:
        """Close every kept-alive connection (of every thread)."""
        with self._lock:
            connections, self._all_connections = self._all_connections, []
        for connection in connections:
            connection.close()

    def __enter__(self) -> HttpRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # HTTP machinery

    def _with_retries(self, attempt: Callable[[], _T]) -> _T:
        delay = 0.25
        for remaining in range(self.retries, -1, -1):
            try:
                return attempt()
            except _Retryable as error:
                if remaining == 0:
                    raise BackendUnavailableError(str(error)) from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _get(self, url: str) -> tuple[HTTPResponse, _Key] | None:
        """GET ``url`` following redirects; None for 404/410; raise on other failures.

        The caller must read the body to the end (or close the response) before the
        thread's connection is used again.
        """
        for _ in range(_MAX_REDIRECTS + 1):
            response, key = self._send(url)
            status = response.status
            if status in _REDIRECTS:
                location = response.getheader("Location")
                _drain(response)
                if not location:
                    raise BackendUnavailableError(f"{url}: HTTP {status} without a Location")
                url = urljoin(url, location)
                if urlsplit(url).scheme.lower() not in ("http", "https"):
                    raise BackendUnavailableError(f"redirected to a non-HTTP URL: {url}")
                continue
            if status == 200:
                return response, key
            _drain(response)
            if status in _NOT_FOUND:
                return None
            message = f"{url}: HTTP {status} {response.reason}".rstrip()
            if status in _RETRYABLE:
                raise _Retryable(message)
            raise BackendUnavailableError(message)
        raise BackendUnavailableError(f"{url}: more than {_MAX_REDIRECTS} redirects")

    def _send(self, url: str) -> tuple[HTTPResponse, _Key]:
        import http.client

        parts = urlsplit(url)
        key = (parts.scheme.lower(), parts.hostname or "", parts.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for first_try in (True, False):
            route, reused = self._route(key)
            headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
            headers.update(route.headers)
            if self._auth and url.startswith(self._base + "/"):
                headers["Authorization"] = self._auth
            try:
                route.connection.request(
                    "GET", url if route.absolute_form else target, headers=headers
                )
                return route.connection.getresponse(), key
            except (http.client.HTTPException, OSError) as error:
                self._forget(key)
                # A kept-alive connection the server closed meanwhile: try a fresh one.
                if reused and first_try and _is_stale(error):
                    continue
                message = f"cannot reach {url}: {_describe(error)}"
                if _is_certificate_error(error):  # retrying cannot help
                    raise BackendUnavailableError(message) from None
                raise _Retryable(message) from None
        raise AssertionError("unreachable")

    def _route(self, key: _Key) -> tuple[_Route, bool]:
        """This thread's connection for ``key`` (and whether it was used before)."""
        pool: dict[_Key, _Route] = self._local.__dict__.setdefault("pool", {})
        if key in pool:
            return pool[key], True
        route = _new_route(key, self.timeout)
        pool[key] = route
        with self._lock:
            self._all_connections.append(route.connection)
        return route, False

    def _forget(self, key: _Key) -> None:
        pool = self._local.__dict__.get("pool", {})
        route = pool.pop(key, None)
        if route is not None:
            route.connection.close()
            with self._lock:
                if route.connection in self._all_connections:
                    self._all_connections.remove(route.connection)


@dataclass(frozen=True)
class _Route:
    """A connection and how to talk through it (directly, or via a proxy)."""

    connection: HTTPConnection
    absolute_form: bool = False  # plain-HTTP proxies want the full URL as target
    headers: dict[str, str] = field(default_factory=dict)


def _new_route(key: _Key, timeout: float) -> _Route:
    import http.client
    import urllib.request

    scheme, host, port = key
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        if scheme == "https":
            return _Route(http.client.HTTPSConnection(host, port, timeout=timeout))
        return _Route(http.client.HTTPConnection(host, port, timeout=timeout))
    proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers: dict[str, str] = {}
    if proxy_parts.username is not None:
        pair = f"{unquote(proxy_parts.username)}:{unquote(proxy_parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    proxy_host, proxy_port = proxy_parts.hostname or "", proxy_parts.port or 8080
    if scheme == "https":  # CONNECT tunnel through the proxy; TLS end to end
        tunnel = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=timeout)
        tunnel.set_tunnel(host, port, headers=headers)
        return _Route(tunnel)
    connection = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
    return _Route(connection, absolute_form=True, headers=headers)


class _Closing:
    """Context: on error, drop the response's connection; on success, keep it alive."""

    def __init__(self, repo: HttpRepository, response: HTTPResponse, key: _Key) -> None:
        self._repo = repo
        self._response = response
        self._key = key

    def __enter__(self) -> HTTPResponse:
        return self._response

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None or not self._response.isclosed():
            self._response.close()
            self._repo._forget(self._key)


class _ResponseReader:
    """``read(n)`` over a response: network failures and a body shorter than its
    Content-Length become retryable errors."""

    def __init__(self, response: HTTPResponse, url: str) -> None:
        self._response = response
        self._url = url
        self._expected = response.length
        self._received = 0

    def read(self, size: int = -1) -> bytes:
        import http.client

        try:
            data = self._response.read(size if size >= 0 else None)
        except (http.client.HTTPException, OSError) as error:
            raise _Retryable(f"download of {self._url} failed: {_describe(error)}") from None
        self._received += len(data)
        if not data and self._expected is not None and self._received < self._expected:
            raise _Retryable(
                f"truncated download of {self._url}: got {self._received} of {self._expected} bytes"
            )
        return data


def _read_body(response: HTTPResponse, url: str, limit: int) -> bytes:
    reader = _ResponseReader(response, url)
    chunks: list[bytes] = []
    total = 0
    while chunk := reader.read(1 << 16):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise BackendUnavailableError(f"{url}: larger than {limit} bytes")
    return b"".join(chunks)


def _drain(response: HTTPResponse) -> None:
    import http.client

    try:
        response.read()
    except (http.client.HTTPException, OSError):
        response.close()


def _segment(text: str) -> str:
    """Percent-encode one path segment (``@`` is legal in paths and kept readable)."""
    return quote(text, safe="@")


def _is_stale(error: BaseException) -> bool:
    import http.client

    return isinstance(
        error,
        http.client.RemoteDisconnected
        | http.client.BadStatusLine
        | ConnectionResetError
        | BrokenPipeError
        | ConnectionAbortedError,
    )


def _is_certificate_error(error: BaseException) -> bool:
    import ssl

    return isinstance(error, ssl.SSLCertVerificationError)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if type(error).__name__ in text else f"{type(error).__name__}: {text}"
