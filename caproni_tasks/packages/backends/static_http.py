"""A read-only repository served over HTTP(S) by any static web server or bucket.

The layout is the local one (`caproni_tasks.packages.index`), so ``python -m
http.server`` in a repository directory is a working server. Each package's
``@index.json`` is fetched at most once per `HttpRepository` object (one request per
package however many versions are resolved, from however many threads). Instance
files stream to disk in chunks, as sent (no transparent decompression), with the hash
checked as they arrive.

Requests go through one ``httpx.Client`` per repository object (imported on first
use, so ``invoke --list`` never loads it): kept-alive connections pooled across
threads, redirects followed, proxies from ``http_proxy``/``https_proxy``/``no_proxy``
(``trust_env``), the system's trusted certificates (and ``SSL_CERT_FILE`` /
``SSL_CERT_DIR``). Credentials in the URL (``https://user:token@host/repo``) are sent
as HTTP basic auth to that repository only, never to another host a redirect names.

Three limits bound every request, so a broken server cannot hang a run:

- ``connect_timeout``: seconds to open a connection (TCP and TLS);
- ``stall_timeout``: seconds without a single byte from the server (headers or body);
- ``deadline``: seconds for the whole operation (an index read or an instance download,
  headers, body, retries and their waits included). httpx has no such total limit, so
  it is enforced here: between body chunks, and below httpx by clamping each socket
  wait to the time left (a server trickling header bytes cannot stretch it either).

Connection errors, stalls, 502/503/504 answers and truncated bodies are retried
``retries`` times with exponential backoff (``backoff``, doubling, at most 8 s, never
past the deadline); other failures are not.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from caproni_tasks.packages.backends import Backend
from caproni_tasks.packages.index import (
    CHUNK,
    INDEX_FILE,
    INSTANCES_DIR,
    IndexedRepository,
    PackageIndex,
    check_package_name,
    copy_verified,
)
from caproni_tasks.packages.repository import (
    BackendUnavailableError,
    InstanceNotFoundError,
    NetworkOptions,
    PackageNotFoundError,
    ReadOnlyRepositoryError,
    RepositoryError,
    UnsupportedOperationError,
)

if TYPE_CHECKING:
    import ssl

    import httpcore
    import httpx

__all__ = [
    "BACKEND",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEADLINE",
    "DEFAULT_RETRIES",
    "DEFAULT_STALL_TIMEOUT",
    "HttpRepository",
]

DEFAULT_CONNECT_TIMEOUT = NetworkOptions.connect_timeout
DEFAULT_STALL_TIMEOUT = NetworkOptions.stall_timeout
DEFAULT_DEADLINE = NetworkOptions.deadline
DEFAULT_RETRIES = NetworkOptions.retries
DEFAULT_BACKOFF = 0.25
_MAX_BACKOFF = 8.0
_MAX_REDIRECTS = 5
_NOT_FOUND = (404, 410)
_RETRYABLE = (502, 503, 504)
_MAX_INDEX_BYTES = 64 << 20
_USER_AGENT = "caproni-tasks"

#: When the current thread's operation must end (``time.monotonic()``), read by the
#: network streams below httpx; None outside an operation.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "caproni_http_deadline", default=None
)
_DEADLINE_HIT = "caproni-tasks: deadline reached"

_T = TypeVar("_T")


class _Retryable(BackendUnavailableError):
    """A failure worth another attempt (connection trouble, a stall, 502/503/504,
    truncation)."""


class HttpRepository(IndexedRepository):
    """The repository at ``url`` (``http://`` or ``https://``), read only. Thread safe.

    ``connect_timeout``, ``stall_timeout`` and ``deadline`` are in seconds (see the
    module docstring); ``retries`` is how many more attempts a request gets after a
    transient failure, the first after ``backoff`` seconds, then twice as long each time.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_index_bytes: int = _MAX_INDEX_BYTES,
    ) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port  # urllib checks the port only when asked
        except ValueError as error:
            raise RepositoryError(f"bad repository URL {url!r}: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise RepositoryError(f"not an HTTP(S) repository URL: {url!r}")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("stall_timeout", stall_timeout),
            ("deadline", deadline),
        ):
            if not value > 0:
                raise RepositoryError(f"HTTP {name} must be a positive number of seconds")
        if retries < 0 or backoff < 0:
            raise RepositoryError("HTTP retries and backoff must not be negative")
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
        self.connect_timeout = float(connect_timeout)
        self.stall_timeout = float(stall_timeout)
        self.deadline = float(deadline)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_index_bytes = max_index_bytes
        self._lock = threading.Lock()
        self._package_locks: dict[str, threading.Lock] = {}
        self._indexes: dict[str, PackageIndex | PackageNotFoundError] = {}
        self._http: httpx.Client | None = None

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

        def attempt(deadline: float) -> PackageIndex | PackageNotFoundError:
            # Decoded (a server may gzip JSON); the limit counts decoded bytes.
            with self._get(url, deadline, raw=False) as response:
                if response is None:
                    return PackageNotFoundError(f'no such package "{package}" in {self._base}')
                declared = _content_length(response)
                if declared is not None and declared > self.max_index_bytes:
                    raise BackendUnavailableError(
                        f"{url}: larger than {self.max_index_bytes} bytes"
                    )
                body = _Body(self, response, url, deadline, decoded=True)
                chunks: list[bytes] = []
                total = 0
                while chunk := body.read(CHUNK):
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > self.max_index_bytes:
                        raise BackendUnavailableError(
                            f"{url}: larger than {self.max_index_bytes} bytes"
                        )
            return PackageIndex.from_json(b"".join(chunks), package=package, source=url)

        return self._with_retries(attempt)

    @property
    def writable(self) -> bool:
        return False

    def packages(self) -> list[str]:
        raise UnsupportedOperationError(
            f"cannot list {self._base}: a static server has no listing of its packages "
            "(try pkg.describe --name PACKAGE)"
        )

    def register_instance(self, package_file: Path) -> str:
        raise self._read_only()

    def set_ref(self, package: str, ref: str, instance_id: str) -> None:
        raise self._read_only()

    def attach_tags(self, package: str, instance_id: str, tags: Sequence[str]) -> None:
        raise self._read_only()

    def _read_only(self) -> ReadOnlyRepositoryError:
        return ReadOnlyRepositoryError(
            f"repository {self._base} is read-only: publish into a local directory "
            "repository (--repo DIR) and serve it (pkg.serve) or upload that directory"
        )

    def fetch_instance(
        self,
        package: str,
        instance_id: str,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        url = self.instance_url(package, instance_id)
        dest = Path(dest)

        def attempt(deadline: float) -> None:
            with self._get(url, deadline, raw=True) as response:
                if response is None:
                    dest.unlink(missing_ok=True)
                    raise InstanceNotFoundError(
                        f'no such instance "{instance_id}" of package "{package}" at {url}'
                    )
                copy_verified(
                    _Body(self, response, url, deadline, decoded=False),
                    dest,
                    instance_id,
                    origin=url,
                    progress=progress,
                    expected_size=_content_length(response),
                )

        self._with_retries(attempt)

    def close(self) -> None:
        """Close every kept-alive connection (a later request opens new ones)."""
        with self._lock:
            client, self._http = self._http, None
        if client is not None:
            client.close()

    def __enter__(self) -> HttpRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # HTTP machinery

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = _new_client(self.connect_timeout, self.stall_timeout)
            return self._http

    def _with_retries(self, attempt: Callable[[float], _T]) -> _T:
        """Run ``attempt(deadline)`` until it succeeds, fails for good, or time is up."""
        deadline = time.monotonic() + self.deadline
        token = _DEADLINE.set(deadline)
        try:
            delay = self.backoff
            for remaining in range(self.retries, -1, -1):
                try:
                    return attempt(deadline)
                except _Retryable as error:
                    wait = min(delay, _MAX_BACKOFF)
                    if remaining == 0 or time.monotonic() + wait >= deadline:
                        raise BackendUnavailableError(str(error)) from None
                time.sleep(wait)
                delay *= 2
            raise AssertionError("unreachable")
        finally:
            _DEADLINE.reset(token)

    def _get(self, url: str, deadline: float, *, raw: bool) -> _Response:
        """Open a streamed GET of ``url`` (redirects followed) as a context manager
        giving the 200 response, or None for 404/410; raise on other answers."""
        import httpx

        client = self._client()
        headers = {"User-Agent": _USER_AGENT}
        if raw:
            headers["Accept-Encoding"] = "identity"
        if self._auth and url.startswith(self._base + "/"):
            headers["Authorization"] = self._auth  # httpx drops it on a cross-origin redirect
        request = client.build_request("GET", url, headers=headers)
        for first_try in (True, False):
            try:
                response = client.send(request, stream=True)
                break
            except httpx.RemoteProtocolError as error:
                # A kept-alive connection the server closed meanwhile: one fresh try.
                if first_try and "without sending" in str(error):
                    continue
                raise self._failure(url, error, deadline) from None
            except httpx.HTTPError as error:
                raise self._failure(url, error, deadline) from None
        else:  # pragma: no cover - the loop always breaks or raises
            raise AssertionError("unreachable")
        status = response.status_code
        if status == 200:
            return _Response(response)
        final = str(response.url)
        response.close()
        if status in _NOT_FOUND:
            return _Response(None)
        message = f"{final}: HTTP {status} {response.reason_phrase}".rstrip()
        if status in _RETRYABLE:
            raise _Retryable(message)
        if response.is_redirect:
            raise BackendUnavailableError(f"{message} without a usable Location")
        raise BackendUnavailableError(message)

    def _failure(self, url: str, error: Exception, deadline: float) -> RepositoryError:
        """The repository error for an httpx failure of a request to ``url``."""
        import httpx

        if _DEADLINE_HIT in str(error) or time.monotonic() >= deadline:
            return BackendUnavailableError(
                f"timed out: deadline of {_seconds(self.deadline)} reached for {url}"
            )
        if isinstance(error, httpx.ConnectTimeout):
            return _Retryable(
                f"timed out: could not connect within {_seconds(self.connect_timeout)} to {url}"
            )
        if isinstance(error, httpx.TimeoutException):
            return _Retryable(f"timed out: no bytes for {_seconds(self.stall_timeout)} from {url}")
        if isinstance(error, httpx.TooManyRedirects):
            return BackendUnavailableError(f"{url}: more than {_MAX_REDIRECTS} redirects")
        if isinstance(error, httpx.UnsupportedProtocol):
            return BackendUnavailableError(f"{url}: redirected to a non-HTTP URL ({error})")
        message = f"cannot reach {url}: {_describe(error)}"
        if _is_certificate_error(error) or not isinstance(error, httpx.TransportError):
            return BackendUnavailableError(message)  # retrying cannot help
        return _Retryable(message)


class _Response:
    """``with repo._get(...) as response``: the response (or None), closed on exit."""

    def __init__(self, response: httpx.Response | None) -> None:
        self._response = response

    def __enter__(self) -> httpx.Response | None:
        return self._response

    def __exit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()


class _Body:
    """``read(n)`` over a streamed response body for `copy_verified`: network failures,
    stalls and a body shorter than its Content-Length become retryable errors; the
    deadline is checked between chunks."""

    def __init__(
        self,
        repo: HttpRepository,
        response: httpx.Response,
        url: str,
        deadline: float,
        *,
        decoded: bool,
    ) -> None:
        self._repo = repo
        self._url = url
        self._deadline = deadline
        # Content-Length counts the bytes sent: compare only with what is read as sent.
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        self._expected = None if decoded and encoded else _content_length(response)
        self._received = 0
        self._chunks: Iterator[bytes] = response.iter_bytes() if decoded else response.iter_raw()
        self._pending = b""

    def read(self, size: int = -1, /) -> bytes:
        import httpx

        if not self._pending:
            if time.monotonic() >= self._deadline:
                raise self._repo._failure(self._url, TimeoutError(_DEADLINE_HIT), self._deadline)
            try:
                self._pending = next(self._chunks, b"")
            except httpx.RemoteProtocolError as error:
                # The connection closed before the body was complete.
                if self._expected is not None:
                    raise self._truncated() from None
                raise _Retryable(f"download of {self._url} failed: {_describe(error)}") from None
            except httpx.TimeoutException as error:
                raise self._repo._failure(self._url, error, self._deadline) from None
            except httpx.HTTPError as error:
                raise _Retryable(f"download of {self._url} failed: {_describe(error)}") from None
            self._received += len(self._pending)
            if not self._pending and self._received < (self._expected or 0):
                raise self._truncated()
        if size < 0 or size >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def _truncated(self) -> _Retryable:
        return _Retryable(
            f"truncated download of {self._url}: got {self._received} of {self._expected} bytes"
        )


def _new_client(connect_timeout: float, stall_timeout: float) -> httpx.Client:
    import httpx

    client = httpx.Client(
        timeout=httpx.Timeout(
            connect=connect_timeout, read=stall_timeout, write=stall_timeout, pool=stall_timeout
        ),
        follow_redirects=True,
        max_redirects=_MAX_REDIRECTS,
        trust_env=True,  # proxies from the environment
        verify=_ssl_context(),
    )
    _watch_deadlines(client)
    return client


def _ssl_context() -> ssl.SSLContext:
    """The system's trusted certificates, as Python's own clients use (so a company CA
    installed there works; OpenSSL honours ``SSL_CERT_FILE``/``SSL_CERT_DIR``); certifi's
    only where the system offers none (e.g. a python.org build on macOS).

    Loading a CA bundle costs tens of milliseconds, so one context (thread safe) serves
    every repository of the process, per value of those two variables.
    """
    import os

    return _ssl_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _ssl_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    import ssl

    context = ssl.create_default_context()
    if (
        not cert_file
        and not cert_dir
        and not context.get_ca_certs()
        and not ssl.get_default_verify_paths().capath
    ):
        try:
            import certifi
        except ImportError:  # pragma: no cover - httpx depends on it
            return context
        context.load_verify_locations(cafile=certifi.where())
    return context


def _watch_deadlines(client: httpx.Client) -> None:
    """Make every transport of ``client`` (direct, and each proxy from the environment)
    clamp its socket waits to the current operation's deadline.

    httpx has no total timeout (its read timeout is per socket read), and offers no
    public way to give its transports a network backend; httpcore does
    (``network_backend``). So the pools httpx built are given a wrapping backend here.
    Should a later httpx rename these attributes, nothing breaks: the deadline is then
    checked between body chunks only.
    """
    transports = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    wrapper: Any = _deadline_backend_type()  # its constructor takes the inner backend
    for transport in transports:
        pool: Any = getattr(transport, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if inner is not None and not isinstance(inner, wrapper):
            pool._network_backend = wrapper(inner)


@functools.cache
def _deadline_backend_type() -> type[httpcore.NetworkBackend]:
    """An httpcore network backend (and stream) that clamps every connect, read and write
    timeout to the time left before ``_DEADLINE`` (built on first use: httpcore is
    imported lazily)."""
    import httpcore

    def clamp(timeout: float | None) -> tuple[float | None, bool]:
        deadline = _DEADLINE.get()
        if deadline is None:
            return timeout, False
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout(_DEADLINE_HIT)
        if timeout is None or left < timeout:
            return left, True
        return timeout, False

    class Stream(httpcore.NetworkStream):
        def __init__(self, inner: httpcore.NetworkStream) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            limit, clamped = clamp(timeout)
            try:
                return self._inner.read(max_bytes, limit)
            except httpcore.ReadTimeout:
                if clamped:
                    raise httpcore.ReadTimeout(_DEADLINE_HIT) from None
                raise

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            limit, clamped = clamp(timeout)
            try:
                self._inner.write(buffer, limit)
            except httpcore.WriteTimeout:
                if clamped:
                    raise httpcore.WriteTimeout(_DEADLINE_HIT) from None
                raise

        def close(self) -> None:
            self._inner.close()

        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            limit, clamped = clamp(timeout)
            try:
                return Stream(self._inner.start_tls(ssl_context, server_hostname, limit))
            except httpcore.ConnectTimeout:
                if clamped:
                    raise httpcore.ConnectTimeout(_DEADLINE_HIT) from None
                raise

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def __init__(self, inner: httpcore.NetworkBackend) -> None:
            self._inner = inner

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            limit, clamped = clamp(timeout)
            try:
                stream = self._inner.connect_tcp(host, port, limit, local_address, socket_options)
            except httpcore.ConnectTimeout:
                if clamped:
                    raise httpcore.ConnectTimeout(_DEADLINE_HIT) from None
                raise
            return Stream(stream)

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:  # pragma: no cover - URLs here are never sockets
            limit, _ = clamp(timeout)
            return Stream(self._inner.connect_unix_socket(path, limit, socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return Backend


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or response.headers.get("Transfer-Encoding"):
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _segment(text: str) -> str:
    """Percent-encode one path segment (``@`` is legal in paths and kept readable)."""
    return quote(text, safe="@")


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _is_certificate_error(error: BaseException) -> bool:
    import ssl

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if type(error).__name__ in text else f"{type(error).__name__}: {text}"


def _open(url: str, network: NetworkOptions) -> HttpRepository:
    return HttpRepository(
        url,
        connect_timeout=network.connect_timeout,
        stall_timeout=network.stall_timeout,
        deadline=network.deadline,
        retries=network.retries,
    )


#: Every http(s) URL the CIPD backend does not claim.
BACKEND = Backend("static_http", ("http", "https"), _open)
