"""A repository that is a CIPD service, spoken to with the CIPD protocol (pRPC JSON).

Facts from ../shared/reference/cipd-service.md; the framing, codes and instance-ID
encoding live in `caproni_tasks.packages.cipd_protocol`, shared with our server.

**Which URLs speak this protocol** (decided from the URL alone, no request):

- ``cipd+https://host[:port]`` and ``cipd+http://host[:port]``, always;
- ``https://chrome-infra-packages.appspot.com`` (the cipd client's default service,
  used when nothing names a service) and every root URL listed in the
  ``caproni.cipd_services`` setting, written ``http(s)://host[:port]``;
- any other ``http(s)://`` URL is a static repository
  (`caproni_tasks.packages.backends.static_http`).

A CIPD service URL is a root URL: it is normalised to ``scheme://host[:port]`` and one
with a path is refused (the cipd client's "expecting a root URL").

**Calls** are POSTs to ``/prpc/cipd.Repository/<Method>`` (and ``cipd.Storage``) with
``Accept`` and ``Content-Type: application/json``; the ``X-Prpc-Grpc-Code`` header
decides the outcome whatever the HTTP status (a response without it is read as the Go
client does). Transient codes (UNKNOWN, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED) and
transport failures are retried ``retries`` times with exponential backoff; every wait
is bounded by the connect, stall and deadline limits of `NetworkOptions`, through the
same httpx machinery as the static backend. Redirects are never followed for calls.

**Install**: instance IDs need no call when installing (the ensure resolver never asks
for them); ``resolve_version`` of an instance ID checks it exists (DescribeInstance);
tags go through ResolveVersion once and are then remembered on disk per service URL
(``<cache dir>/@tags/``: tags never move); refs are always asked. An instance is
downloaded from the signed URL GetInstanceURL returns, *without* credentials and as
raw bytes, its hash checked as they arrive; a retried download asks for a fresh URL.

**Auth**: anonymous unless ``auth_token`` is set, or ``auth_token_command`` prints a
token (run once per process, when the first call is made). The token goes only to the
service's own calls: never to a signed download or upload URL, never shown.

**Publish**: RegisterInstance; when the service asks for the bytes, a resumable upload
to the returned URL in chunks (``Content-Range``), resumed after errors from what the
storage confirms (``bytes */<total>``); FinishUpload polled with a growing, bounded
delay; RegisterInstance again. Tags and refs are retried while the service answers
FAILED_PRECONDITION (the instance is still being processed), for a bounded time.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from caproni_tasks.packages.backends import Backend
from caproni_tasks.packages.cipd_protocol import (
    CODE_HEADER,
    DEFAULT_SERVICE_URL,
    REPOSITORY_SERVICE,
    STORAGE_SERVICE,
    TRANSIENT_CODES,
    GrpcCode,
    PrpcError,
    code_for_http_status,
    decode_response,
    error_code_for,
    field,
    instance_id_of_ref,
    normalize_service_url,
    object_ref,
    rpc_path,
)
from caproni_tasks.packages.repository import (
    AmbiguousVersionError,
    BackendUnavailableError,
    InstanceInfo,
    InstanceNotFoundError,
    NetworkOptions,
    PackageDescription,
    PackageNotFoundError,
    RepositoryError,
    VersionNotFoundError,
)

if TYPE_CHECKING:
    import httpx

    from caproni_tasks.packages.backends.static_http import HttpRepository

__all__ = [
    "BACKEND",
    "CipdAuthError",
    "CipdError",
    "CipdRepository",
    "TagCache",
    "cipd_service_url",
]

_USER_AGENT = "caproni-tasks"
_JSON = "application/json"
_MAX_RESPONSE_BYTES = 64 << 20
_MAX_MESSAGE = 500
_MAX_BACKOFF = 8.0
_UPLOAD_CHUNK = 4 << 20
_PAGE_SIZE = 1000
_MAX_DESCRIBED = 1000
_DESCRIBE_THREADS = 8
_TOKEN_COMMAND_TIMEOUT = 120.0
_CREDENTIALS_HINT = (
    "give credentials with the caproni.auth_token setting (e.g. the environment variable "
    "INVOKE_CAPRONI_AUTH_TOKEN) or caproni.auth_token_command (e.g. 'luci-auth token' or "
    "'gcloud auth print-access-token')"
)


class CipdError(RepositoryError):
    """A failed call; ``error_code`` is the cipd client's code for it."""

    def __init__(self, message: str, error_code: str = "rpc_error") -> None:
        super().__init__(message)
        self.error_code = error_code


class CipdAuthError(CipdError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "auth_error")


# --- which URLs speak the CIPD protocol ---------------------------------------------------


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (default port dropped), else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def cipd_service_url(url: str, cipd_services: Sequence[str] = ()) -> str | None:
    """The normalised root URL of the CIPD service ``url`` names, or None when ``url`` is
    not a CIPD service (a static repository, a directory). See the module docstring.

    Raises `RepositoryError` for a CIPD service URL with a path, and for a bad entry of
    ``cipd_services``.
    """
    scheme = url.strip().partition(":")[0].lower()
    if scheme in ("cipd+http", "cipd+https"):
        try:
            return normalize_service_url(url.strip()[len("cipd+") :])
        except ValueError as error:
            raise RepositoryError(str(error)) from None
    origin = _origin(url)
    if origin is None:
        return None
    services = {DEFAULT_SERVICE_URL}
    for entry in cipd_services:
        text = str(entry).strip()
        if text.lower().startswith("cipd+"):
            text = text[len("cipd+") :]
        try:
            services.add(normalize_service_url(text))
        except ValueError as error:
            raise RepositoryError(f"caproni.cipd_services: {error}") from None
    if origin not in services:
        return None
    try:
        return normalize_service_url(url)
    except ValueError as error:
        raise RepositoryError(str(error)) from None


# --- the tag cache -----------------------------------------------------------------------


class TagCache:
    """Tags a service resolved, remembered in ``<directory>/<key>.json`` (key: a hash of
    the service URL), since a tag never moves to another instance. Without a directory,
    in memory only. Written atomically; a damaged file is ignored (and replaced)."""

    MAX_ENTRIES = 4096
    FORMAT = 1

    def __init__(self, directory: Path | None, service: str) -> None:
        self.service = service
        key = hashlib.sha256(service.encode("utf-8")).hexdigest()[:24]
        self.path = directory / f"{key}.json" if directory is not None else None
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], str] | None = None

    def get(self, package: str, tag: str) -> str | None:
        with self._lock:
            if self._entries is None:
                self._entries = self._read()
            return self._entries.get((package, tag))

    def put(self, package: str, tag: str, instance_id: str) -> None:
        with self._lock:
            entries = self._read()  # what other processes added meanwhile
            entries.update(self._entries or {})
            entries.pop((package, tag), None)
            entries[(package, tag)] = instance_id
            while len(entries) > self.MAX_ENTRIES:
                del entries[next(iter(entries))]
            self._entries = entries
            if self.path is None:
                return
            data = {
                "format": self.FORMAT,
                "service": self.service,
                "tags": [[p, t, i] for (p, t), i in entries.items()],
            }
            from caproni_tasks.atomicfile import write_atomic

            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.path, json.dumps(data) + "\n", durable=False)
            except OSError:
                pass  # only a cache: the next run asks the service again

    def _read(self) -> dict[tuple[str, str], str]:
        if self.path is None:
            return {}
        from caproni_tasks.ensure import is_instance_id

        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(data, dict) or data.get("format") != self.FORMAT:
            return {}
        if data.get("service") != self.service or not isinstance(data.get("tags"), list):
            return {}
        entries: dict[tuple[str, str], str] = {}
        for item in data["tags"]:
            if (
                isinstance(item, list)
                and len(item) == 3
                and all(isinstance(part, str) for part in item)
                and is_instance_id(item[2])
            ):
                entries[(item[0], item[1])] = item[2]
        return entries


# --- tokens --------------------------------------------------------------------------------

_TOKEN_LOCK = threading.Lock()
_COMMAND_TOKENS: dict[str, str | CipdAuthError] = {}


def _command_token(command: str) -> str:
    """The token ``command`` prints, run once per process (its failure too)."""
    with _TOKEN_LOCK:
        found = _COMMAND_TOKENS.get(command)
        if found is None:
            found = _run_token_command(command)
            _COMMAND_TOKENS[command] = found
    if isinstance(found, CipdAuthError):
        raise CipdAuthError(str(found))
    return found


def _run_token_command(command: str) -> str | CipdAuthError:
    what = f"caproni.auth_token_command {command!r}"
    try:
        argv = shlex.split(command)
    except ValueError as error:
        return CipdAuthError(f"{what}: cannot split it into words: {error}")
    if not argv:
        return CipdAuthError(f"{what}: empty command")
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TOKEN_COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        return CipdAuthError(f"{what} failed: {argv[0]!r} not found")
    except subprocess.TimeoutExpired:
        return CipdAuthError(f"{what} failed: no answer within {_TOKEN_COMMAND_TIMEOUT:g} s")
    except OSError as error:
        return CipdAuthError(f"{what} failed: {error.strerror or error}")
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = f": {lines[-1][:_MAX_MESSAGE]}" if lines else ""
        return CipdAuthError(f"{what} failed (exit status {done.returncode}){why}")
    token = done.stdout.decode("utf-8", "replace").strip()
    if not token:
        return CipdAuthError(f"{what} printed no token")
    if not _is_token(token):
        return CipdAuthError(f"{what} printed more than one word (expected just a token)")
    return token


def _is_token(token: str) -> bool:
    return bool(token) and all(0x21 <= ord(char) <= 0x7E for char in token)


# --- the repository --------------------------------------------------------------------------


class CipdRepository:
    """The CIPD service at ``url`` (see the module docstring); read and write. Thread safe.

    ``backoff`` is the first wait before a retry (doubling, at most 8 s);
    ``upload_chunk`` the size of each upload request; ``finalize_timeout`` how long the
    service may take to verify an upload; ``ready_timeout`` how long tags and refs are
    retried while the service still processes a new instance (``ready_interval`` the
    first wait between tries, doubling up to 5 s).
    """

    def __init__(
        self,
        url: str,
        *,
        network: NetworkOptions | None = None,
        backoff: float = 0.25,
        upload_chunk: int = _UPLOAD_CHUNK,
        finalize_timeout: float = 300.0,
        ready_timeout: float = 180.0,
        ready_interval: float = 0.5,
    ) -> None:
        options = network or NetworkOptions()
        text = url.strip()
        if text.lower().startswith("cipd+"):
            text = text[len("cipd+") :]
        try:
            self._base = normalize_service_url(text)
        except ValueError as error:
            raise RepositoryError(str(error)) from None
        if upload_chunk <= 0 or finalize_timeout <= 0 or ready_timeout <= 0:
            raise RepositoryError("upload chunk and CIPD timeouts must be positive")
        from caproni_tasks.packages.backends.static_http import HttpRepository

        # The static backend's HTTP machinery (pooled client, limits, body reader);
        # it never sends credentials (none in this URL).
        self._http: HttpRepository = HttpRepository(
            self._base,
            connect_timeout=options.connect_timeout,
            stall_timeout=options.stall_timeout,
            deadline=options.deadline,
            retries=options.retries,
            backoff=backoff,
        )
        self.deadline = options.deadline
        self.retries = options.retries
        self.backoff = backoff
        self.upload_chunk = upload_chunk
        self.finalize_timeout = finalize_timeout
        self.ready_timeout = ready_timeout
        self.ready_interval = ready_interval
        self._token = options.auth_token or None
        self._token_command = options.auth_token_command or None
        if self._token is not None and not _is_token(self._token):
            raise CipdAuthError("caproni.auth_token must be a single token (one word)")
        tags_dir = options.cache_dir / "@tags" if options.cache_dir is not None else None
        self.tag_cache = TagCache(tags_dir, self._base)

    @property
    def url(self) -> str:
        return self._base

    @property
    def anonymous(self) -> bool:
        return self._token is None and self._token_command is None

    def __repr__(self) -> str:
        return f"CipdRepository({self._base!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CipdRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- resolving ------------------------------------------------------------------------

    def resolve_version(self, package: str, version: str) -> str:
        from caproni_tasks.ensure import version_kind

        _check_package(package)
        kind = version_kind(version)
        if kind == "instance_id":
            self.describe_instance(package, version)  # it must exist
            return version
        if kind is None:
            raise VersionNotFoundError(
                f'bad version "{version}": not an instance ID, a ref or a tag'
            )
        if kind == "tag":
            cached = self.tag_cache.get(package, version)
            if cached is not None:
                return cached
        reply = self._rpc(
            "ResolveVersion", {"package": package, "version": version}, package, version
        )
        instance_id = self._instance_id(field(reply, "instance"), "ResolveVersion")
        if kind == "tag":
            self.tag_cache.put(package, version, instance_id)
        return instance_id

    def describe_instance(
        self, package: str, instance_id: str, *, tags: bool = False, refs: bool = False
    ) -> dict[str, Any]:
        """The DescribeInstance reply (with all flags off: a cheap existence check)."""
        _check_package(package)
        request: dict[str, Any] = {"package": package, "instance": _ref(instance_id)}
        if tags:
            request["describeTags"] = True
        if refs:
            request["describeRefs"] = True
        return self._rpc("DescribeInstance", request, package, instance_id)

    # --- fetching --------------------------------------------------------------------------

    def fetch_instance(
        self,
        package: str,
        instance_id: str,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        from caproni_tasks.packages.backends.static_http import _Body, _content_length
        from caproni_tasks.packages.index import copy_verified

        _check_package(package)
        ref = _ref(instance_id)
        dest = Path(dest)
        # Signed URLs are secrets: messages name the instance, never the URL.
        label = f'instance {instance_id} of "{package}" (from {self._base})'

        def attempt(deadline: float) -> None:
            reply = self._rpc(
                "GetInstanceURL",
                {"package": package, "instance": ref},
                package,
                instance_id,
                deadline=deadline,
            )
            signed = field(reply, "signedUrl")
            if not isinstance(signed, str) or _origin(signed) is None:
                raise CipdError(f"{self._base}: GetInstanceURL gave no usable signedUrl")
            with self._get_signed(signed, label, deadline) as response:
                copy_verified(
                    _Body(self._http, response, label, deadline, decoded=False),
                    dest,
                    instance_id,
                    origin=label,
                    progress=progress,
                    expected_size=_content_length(response),
                )

        try:
            self._http._with_retries(attempt)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    @staticmethod
    def _closing(response: httpx.Response) -> Any:
        from caproni_tasks.packages.backends.static_http import _Response

        return _Response(response)

    def _get_signed(self, url: str, label: str, deadline: float) -> Any:
        """A streamed GET of a signed URL (no credentials, raw bytes) as a context
        manager giving the 200 response. Answers that a fresh URL may cure (expired or
        refused signatures, 5xx, 408, 429) are retryable: each retry asks for a new URL."""
        import httpx

        from caproni_tasks.packages.backends.static_http import _Retryable

        client = self._http._client()
        request = client.build_request(
            "GET", url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        )
        try:
            response = client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise self._http._failure(label, error, deadline) from None
        status = response.status_code
        if status == 200:
            return self._closing(response)
        response.close()
        message = f"download of {label}: HTTP {status} {response.reason_phrase}".rstrip()
        if status >= 500 or status in (400, 401, 403, 404, 408, 410, 429):
            raise _Retryable(message)
        raise BackendUnavailableError(message)

    # --- describing, listing, searching ----------------------------------------------------

    def describe(self, package: str) -> PackageDescription:
        """Instances (at most the newest 1000), refs and tags of ``package``."""
        _check_package(package)
        listed: list[dict[str, Any]] = []
        token = ""
        while len(listed) < _MAX_DESCRIBED:
            request: dict[str, Any] = {"package": package, "pageSize": _PAGE_SIZE}
            if token:
                request["pageToken"] = token
            reply = self._rpc("ListInstances", request, package)
            listed.extend(_objects(field(reply, "instances", [])))
            token = field(reply, "nextPageToken", "") or ""
            if not token:
                break
        if not listed:
            raise PackageNotFoundError(f'no such package "{package}" in {self._base}')
        listed = listed[:_MAX_DESCRIBED]
        refs_reply = self._rpc("ListRefs", {"package": package}, package)
        refs: dict[str, str] = {}
        for ref in _objects(field(refs_reply, "refs", [])):
            name = ref.get("name")
            if isinstance(name, str):
                refs[name] = self._instance_id(ref.get("instance"), "ListRefs")
        ids = [self._instance_id(item.get("instance"), "ListInstances") for item in listed]

        def tags_of(instance_id: str) -> tuple[str, ...]:
            reply = self.describe_instance(package, instance_id, tags=True)
            found = []
            for tag in _objects(field(reply, "tags", [])):
                key, value = tag.get("key"), tag.get("value")
                if isinstance(key, str) and isinstance(value, str):
                    found.append(f"{key}:{value}")
            return tuple(sorted(found))

        with ThreadPoolExecutor(min(_DESCRIBE_THREADS, len(ids))) as pool:
            tags_by_id = dict(zip(ids, pool.map(tags_of, ids), strict=True))
        refs_of: dict[str, list[str]] = {}
        for name, instance_id in sorted(refs.items()):
            refs_of.setdefault(instance_id, []).append(name)
        owners: dict[str, list[str]] = {}
        instances = []
        for item, instance_id in reversed(list(zip(listed, ids, strict=True))):  # oldest first
            for tag in tags_by_id[instance_id]:
                owners.setdefault(tag, []).append(instance_id)
            instances.append(
                InstanceInfo(
                    instance_id=instance_id,
                    registered_at=_timestamp(field(item, "registeredTs", "")),
                    size=-1,  # the protocol does not tell
                    refs=tuple(refs_of.get(instance_id, ())),
                    tags=tags_by_id[instance_id],
                )
            )
        return PackageDescription(
            package=package,
            instances=tuple(instances),
            refs=dict(sorted(refs.items())),
            tags={tag: tuple(ids) for tag, ids in sorted(owners.items())},
        )

    @property
    def writable(self) -> bool:
        return True  # the service decides per call (PERMISSION_DENIED without a token)

    def known_size(self, package: str, instance_id: str) -> int | None:
        """Unknown: the service tells sizes only in a call of their own."""
        return None

    def packages(self) -> list[str]:
        """Every package the caller may see (ListPrefix of the root, recursive)."""
        reply = self._rpc("ListPrefix", {"prefix": "", "recursive": True})
        return sorted(str(p) for p in field(reply, "packages", []) or [] if isinstance(p, str))

    def search_instances(self, package: str, tags: Sequence[str]) -> list[str]:
        """Instance IDs of ``package`` carrying every tag, newest first (SearchInstances)."""
        from caproni_tasks.ensure import validate_tag

        _check_package(package)
        for tag in tags:
            validate_tag(tag)
        if not tags:
            raise CipdError("search needs at least one key:value tag", "bad_argument_error")
        found: list[str] = []
        token = ""
        while True:
            request: dict[str, Any] = {
                "package": package,
                "tags": [_tag(tag) for tag in tags],
                "pageSize": _PAGE_SIZE,
            }
            if token:
                request["pageToken"] = token
            try:
                reply = self._rpc("SearchInstances", request, package)
            except PackageNotFoundError:
                return []
            found += [
                self._instance_id(item.get("instance"), "SearchInstances")
                for item in _objects(field(reply, "instances", []))
            ]
            token = field(reply, "nextPageToken", "") or ""
            if not token:
                return found

    # --- publishing -------------------------------------------------------------------------

    def register_instance(self, package_file: Path) -> str:
        from caproni_tasks.packages.format import PackageReader, instance_id_of_file

        package_file = Path(package_file)
        with PackageReader(package_file) as reader:
            package = reader.manifest.package_name
        instance_id = instance_id_of_file(package_file)
        request = {"package": package, "instance": _ref(instance_id)}
        reply = self._rpc("RegisterInstance", request, package, instance_id)
        status = field(reply, "status")
        if status in ("REGISTERED", "ALREADY_REGISTERED"):
            return instance_id
        operation = field(reply, "uploadOp")
        if status != "NOT_UPLOADED" or not isinstance(operation, dict):
            raise CipdError(f"{self._base}: RegisterInstance answered status {status!r}")
        operation_id = field(operation, "operationId")
        upload_url = field(operation, "uploadUrl")
        if not isinstance(operation_id, str) or not isinstance(upload_url, str):
            raise CipdError(f"{self._base}: RegisterInstance gave no upload operation")
        label = f'instance {instance_id} of "{package}" (to {self._base})'
        self._upload(upload_url, package_file, label)
        self._finish_upload(operation_id, label)
        reply = self._rpc("RegisterInstance", request, package, instance_id)
        status = field(reply, "status")
        if status not in ("REGISTERED", "ALREADY_REGISTERED"):
            raise CipdError(
                f"{self._base}: {label} still not registered after its upload (status {status!r})",
                "cas_error",
            )
        return instance_id

    def set_ref(self, package: str, ref: str, instance_id: str) -> None:
        from caproni_tasks.ensure import validate_ref

        _check_package(package)
        validate_ref(ref)
        request = {"name": ref, "package": package, "instance": _ref(instance_id)}
        self._when_ready("CreateRef", request, package, instance_id, f"setting ref {ref!r}")

    def attach_tags(self, package: str, instance_id: str, tags: Sequence[str]) -> None:
        from caproni_tasks.ensure import validate_tag

        _check_package(package)
        for tag in tags:
            validate_tag(tag)
        if not tags:
            return
        request = {
            "package": package,
            "instance": _ref(instance_id),
            "tags": [_tag(tag) for tag in dict.fromkeys(tags)],
        }
        self._when_ready("AttachTags", request, package, instance_id, "attaching tags")

    def _when_ready(
        self, method: str, request: dict[str, Any], package: str, instance_id: str, what: str
    ) -> None:
        """Call, retrying FAILED_PRECONDITION ("still being processed") with a doubling
        wait (at most 5 s) for up to ``ready_timeout`` seconds."""
        give_up = time.monotonic() + self.ready_timeout
        delay = self.ready_interval
        while True:
            try:
                self._call(method, request)
                return
            except PrpcError as error:
                if error.code is GrpcCode.FAILED_PRECONDITION:
                    if time.monotonic() + delay < give_up:
                        time.sleep(delay)
                        delay = min(delay * 2, 5.0)
                        continue
                    raise CipdError(
                        f"{self._base}: {what} for {instance_id}: the instance is still being "
                        f"processed after {self.ready_timeout:g} s: {error.message}",
                        "timeout_error",
                    ) from None
                if error.code is GrpcCode.ABORTED:
                    raise CipdError(
                        f"{self._base}: {what} for {instance_id}: the service could not "
                        f"process the instance (it is broken): {error.message}"
                    ) from None
                raise self._error(error, method, package, instance_id) from None

    def _upload(self, url: str, path: Path, label: str) -> None:
        """The resumable upload of ``path`` to ``url`` (no credentials)."""
        import httpx

        from caproni_tasks.packages.backends.static_http import _DEADLINE

        try:
            total = path.stat().st_size
        except OSError as error:
            raise CipdError(f"cannot read {path}: {error.strerror or error}", "io_error") from None
        client = self._http._client()
        deadline = time.monotonic() + self.deadline
        context = _DEADLINE.set(deadline)
        failures = 0
        delay = self.backoff
        offset: int | None = 0
        resume = False
        try:
            with open(path, "rb") as stream:
                while True:
                    try:
                        if resume:
                            offset = self._upload_offset(client, url, total)
                            resume = False
                        if offset is None:
                            return
                        stream.seek(offset)
                        chunk = stream.read(self.upload_chunk)
                        end = offset + len(chunk) - 1
                        response = client.put(
                            url,
                            content=chunk,
                            headers={
                                "User-Agent": _USER_AGENT,
                                "Content-Type": "application/octet-stream",
                                "Content-Range": f"bytes {offset}-{end}/{total}",
                            },
                            follow_redirects=False,
                        )
                        status = response.status_code
                        if status in (200, 201):
                            return
                        if status == 308:
                            confirmed = _confirmed_end(response)
                            offset = end + 1 if confirmed is None else confirmed + 1
                            if offset >= total:  # all confirmed, yet not complete: ask
                                resume = True
                            continue
                        _upload_status_check(status, label, response)
                    except (httpx.HTTPError, _TransientUpload) as error:
                        failures += 1
                        wait = min(delay, _MAX_BACKOFF)
                        if failures > self.retries or time.monotonic() + wait >= deadline:
                            raise BackendUnavailableError(
                                f"upload of {label} failed: {_describe(error)}"
                            ) from None
                        time.sleep(wait)
                        delay *= 2
                        resume = True
        finally:
            _DEADLINE.reset(context)

    @staticmethod
    def _upload_offset(client: httpx.Client, url: str, total: int) -> int | None:
        """Where to resume (None: the storage has everything)."""
        response = client.put(
            url,
            content=b"",
            headers={"User-Agent": _USER_AGENT, "Content-Range": f"bytes */{total}"},
            follow_redirects=False,
        )
        if response.status_code in (200, 201):
            return None
        if response.status_code == 308:
            confirmed = _confirmed_end(response)
            return 0 if confirmed is None else confirmed + 1
        _upload_status_check(response.status_code, "the upload", response)
        raise AssertionError("unreachable")

    def _finish_upload(self, operation_id: str, label: str) -> None:
        """Poll FinishUpload until the service verified the bytes (a growing wait,
        +0.5 s each round up to 10 s, for at most ``finalize_timeout`` seconds)."""
        give_up = time.monotonic() + self.finalize_timeout
        delay = min(self.ready_interval, 1.0)
        while True:
            reply = self._rpc(
                "FinishUpload", {"uploadOperationId": operation_id}, service=STORAGE_SERVICE
            )
            status = field(reply, "status")
            if status == "PUBLISHED":
                return
            if status in ("ERRORED", "CANCELED"):
                why = field(reply, "errorMessage") or status.lower()
                raise CipdError(f"upload of {label} failed: {why}", "cas_error")
            if time.monotonic() + delay >= give_up:
                raise CipdError(
                    f"upload of {label}: not verified within {self.finalize_timeout:g} s "
                    f"(status {status!r})",
                    "timeout_error",
                )
            time.sleep(delay)
            delay = min(delay + 0.5, 10.0)

    # --- calls ------------------------------------------------------------------------------

    def _rpc(
        self,
        method: str,
        request: dict[str, Any],
        package: str | None = None,
        version: str | None = None,
        *,
        service: str = REPOSITORY_SERVICE,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """A call whose failure is a `RepositoryError` with the cipd client's code."""
        try:
            return self._call(method, request, service=service, deadline=deadline)
        except PrpcError as error:
            raise self._error(error, method, package, version) from None

    def _call(
        self,
        method: str,
        request: dict[str, Any],
        *,
        service: str = REPOSITORY_SERVICE,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """One pRPC call with retries of transient codes; `PrpcError` when it fails."""
        from caproni_tasks.packages.backends.static_http import _DEADLINE

        url = self._base + rpc_path(service, method)
        headers = {
            "Accept": _JSON,
            "Content-Type": _JSON,
            "User-Agent": _USER_AGENT,
        }
        authorization = self._authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        body = json.dumps(request, separators=(",", ":")).encode("utf-8")
        own = time.monotonic() + self.deadline
        deadline = own if deadline is None else min(own, deadline)
        context = _DEADLINE.set(deadline)
        try:
            delay = self.backoff
            for remaining in range(self.retries, -1, -1):
                try:
                    return self._attempt(url, body, headers, deadline)
                except _Final as error:
                    raise PrpcError(error.code, error.message) from None
                except PrpcError as error:
                    wait = min(delay, _MAX_BACKOFF)
                    if (
                        error.code not in TRANSIENT_CODES
                        or remaining == 0
                        or time.monotonic() + wait >= deadline
                    ):
                        raise
                time.sleep(wait)
                delay *= 2
            raise AssertionError("unreachable")
        finally:
            _DEADLINE.reset(context)

    def _attempt(
        self, url: str, body: bytes, headers: dict[str, str], deadline: float
    ) -> dict[str, Any]:
        import httpx

        from caproni_tasks.packages.backends.static_http import _Body

        client = self._http._client()
        request = client.build_request("POST", url, content=body, headers=headers)
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as error:
            raise self._transport_error(self._http._failure(url, error, deadline)) from None
        try:
            reader = _Body(self._http, response, url, deadline, decoded=True)
            chunks: list[bytes] = []
            size = 0
            while chunk := reader.read(1 << 20):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_RESPONSE_BYTES:
                    raise _Final(
                        GrpcCode.INTERNAL,
                        f"{url}: response larger than {_MAX_RESPONSE_BYTES} bytes",
                    )
        except RepositoryError as error:
            raise self._transport_error(error) from None
        finally:
            response.close()
        data = b"".join(chunks)
        raw_code = response.headers.get(CODE_HEADER)
        if raw_code is None:
            code = code_for_http_status(response.status_code)
            text = _plain(data.decode("utf-8", "replace"))
            hint = f"HTTP {response.status_code} without a {CODE_HEADER} header"
            if response.is_redirect:
                hint += f" (redirected to {response.headers.get('Location', '?')})"
            raise PrpcError(code, f"{hint}: is {self._base} a CIPD service? {text}".rstrip())
        try:
            code = GrpcCode(int(raw_code.strip()))
        except ValueError:
            code = GrpcCode.UNKNOWN
        if code is GrpcCode.OK:
            return decode_response(data, f"{url} response")
        raise PrpcError(code, _plain(data.decode("utf-8", "replace")) or code.name)

    @staticmethod
    def _transport_error(error: RepositoryError) -> PrpcError:
        from caproni_tasks.packages.backends.static_http import _Retryable

        message = str(error)
        timed_out = message.startswith("timed out")
        if isinstance(error, _Retryable):
            return PrpcError(GrpcCode.DEADLINE_EXCEEDED if timed_out else GrpcCode.UNKNOWN, message)
        return _Final(GrpcCode.DEADLINE_EXCEEDED if timed_out else GrpcCode.UNAVAILABLE, message)

    def _authorization(self) -> str | None:
        if self._token is not None:
            return f"Bearer {self._token}"
        if self._token_command is not None:
            return f"Bearer {_command_token(self._token_command)}"
        return None

    def _error(
        self, error: PrpcError, method: str, package: str | None, version: str | None
    ) -> RepositoryError:
        code, text = error.code, error.message
        subject = ""
        if package is not None:
            subject = f'"{package}"' + (f" {version}" if version else "")
        where = f"{self._base}"
        if code is GrpcCode.NOT_FOUND:
            message = f"{text} ({where})"
            lowered = text.lower()
            if "no such package" in lowered or "no such prefix" in lowered:
                return PackageNotFoundError(message)
            if "no such instance" in lowered or method in ("DescribeInstance", "GetInstanceURL"):
                return InstanceNotFoundError(message)
            return VersionNotFoundError(message)
        if code is GrpcCode.FAILED_PRECONDITION and method == "ResolveVersion":
            return AmbiguousVersionError(f"{text} ({where})")
        if code in (GrpcCode.PERMISSION_DENIED, GrpcCode.UNAUTHENTICATED):
            if self.anonymous:
                what = f"package {subject}" if subject else "what was asked"
                return CipdAuthError(
                    f"{where}: {text}: {what} does not exist, or it needs credentials: "
                    + _CREDENTIALS_HINT
                )
            return CipdAuthError(
                f"{where}: {text} (the credentials given were refused or lack access)"
            )
        about = f" {subject}" if subject else ""
        return CipdError(f"{where}: {method}{about}: {code.name}: {text}", error_code_for(code))

    @staticmethod
    def _instance_id(ref: Any, method: str) -> str:
        if isinstance(ref, dict):
            try:
                return instance_id_of_ref(ref)
            except ValueError:
                pass
        raise CipdError(f"{method} answered an invalid instance reference: {ref!r}")


class _Final(PrpcError):
    """A failure no retry can cure (a certificate error, the deadline, a huge reply)."""


class _TransientUpload(Exception):
    pass


def _upload_status_check(status: int, label: str, response: httpx.Response) -> None:
    if status >= 500 or status in (408, 429):
        raise _TransientUpload(f"HTTP {status}")
    raise CipdError(
        f"upload of {label} refused: HTTP {status} {response.reason_phrase}".rstrip(),
        "cas_error",
    )


def _confirmed_end(response: httpx.Response) -> int | None:
    """The last byte a ``Range: bytes=0-N`` header confirms, None without one."""
    match = re.fullmatch(r"\s*bytes=0-(\d+)\s*", response.headers.get("Range", ""))
    return int(match.group(1)) if match else None


def _check_package(package: str) -> None:
    from caproni_tasks.packages.index import check_package_name

    check_package_name(package)


def _ref(instance_id: str) -> dict[str, str]:
    from caproni_tasks.ensure import ValidationError, validate_instance_id

    try:
        validate_instance_id(instance_id)
        return object_ref(instance_id)
    except (ValidationError, ValueError) as error:
        raise InstanceNotFoundError(str(error)) from None


def _tag(tag: str) -> dict[str, str]:
    key, _, value = tag.partition(":")
    return {"key": key, "value": value}


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _timestamp(value: Any) -> str:
    """An RFC 3339 timestamp as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), as other backends show."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(text: str) -> str:
    """A server's error text on one line: HTML framing stripped, bounded length."""
    if "<" in text and ">" in text:
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
        text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if type(error).__name__ in text else f"{type(error).__name__}: {text}"


def _open(url: str, network: NetworkOptions) -> CipdRepository:
    return CipdRepository(url, network=network)


def _claims(url: str, network: NetworkOptions) -> bool:
    return cipd_service_url(url, network.cipd_services) is not None


BACKEND = Backend("cipd", ("cipd+http", "cipd+https", "http", "https"), _open, _claims)
