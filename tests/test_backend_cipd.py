"""The CIPD protocol client (`caproni_tasks.packages.backends.cipd`).

Most tests talk to `StandIn`, a small pRPC server on 127.0.0.1 defined here: it keeps
packages in memory and answers with the real framing (``)]}'`` prefix, the
``X-Prpc-Grpc-Code`` header, text errors, camelCase JSON), and can be told to misbehave
in ways a real server cannot be made to (transient codes, a front end answering 503
without the code header, failing downloads and upload chunks). Tests against the real
``invoke pkg.serve`` server live at the end of the file.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers_packages import File, build
from helpers_session import invoke_captured

from caproni_tasks.packages.backends import open_repository
from caproni_tasks.packages.backends.cipd import (
    CipdAuthError,
    CipdRepository,
    cipd_service_url,
)
from caproni_tasks.packages.cipd_protocol import (
    CODE_HEADER,
    DEFAULT_SERVICE_URL,
    GrpcCode,
    encode_response,
    http_status_for,
    instance_id_of_ref,
    object_ref,
)
from caproni_tasks.packages.repository import (
    AmbiguousVersionError,
    HashMismatchError,
    InstanceNotFoundError,
    NetworkOptions,
    PackageNotFoundError,
    RepositoryError,
    VersionNotFoundError,
)

# --- the stand-in server -----------------------------------------------------------------


def sha256_iid(data: bytes) -> str:
    return instance_id_of_ref({"hashAlgo": "SHA256", "hexDigest": hashlib.sha256(data).hexdigest()})


def sha1_iid(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class StandIn:
    """State and knobs of the stand-in service (see the module docstring)."""

    instances: dict[str, dict[str, bytes]] = field(default_factory=dict)  # pkg -> iid -> data
    refs: dict[str, dict[str, str]] = field(default_factory=dict)
    tags: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # pkg -> tag -> ids
    calls: list[Call] = field(default_factory=list)
    downloads: list[dict[str, str]] = field(default_factory=list)  # headers of signed GETs
    puts: list[dict[str, str]] = field(default_factory=list)  # headers of upload PUTs
    #: method -> answers to give first: (gRPC code or None for no header, HTTP status, text)
    script: dict[str, list[tuple[GrpcCode | None, int, str]]] = field(default_factory=dict)
    failing_downloads: int = 0
    failing_chunks: int = 0
    not_ready: int = 0  # FAILED_PRECONDITION answers to CreateRef/AttachTags first
    corrupt: bool = False
    signed_host: str = "127.0.0.1"
    port: int = 0
    _tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    _uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    _cas: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, package: str, data: bytes, *, refs: tuple[str, ...] = (), tags=(), sha1=False):  # type: ignore[no-untyped-def]
        iid = sha1_iid(data) if sha1 else sha256_iid(data)
        self.instances.setdefault(package, {})[iid] = data
        for ref in refs:
            self.refs.setdefault(package, {})[ref] = iid
        for tag in tags:
            self.tags.setdefault(package, {}).setdefault(tag, []).append(iid)
        return iid

    def count(self, method: str) -> int:
        return sum(1 for call in self.calls if call.method == method)

    # the methods

    def answer(self, method: str, req: dict[str, Any]) -> dict[str, Any]:
        package = req.get("package", "")
        if method == "ListPrefix":
            return {"packages": sorted(self.instances)} if self.instances else {}
        if method in ("RegisterInstance", "FinishUpload"):
            return self._publish(method, req)
        if package not in self.instances:
            raise Failure(GrpcCode.NOT_FOUND, f"no such package: {package}")
        pkg = self.instances[package]
        if method == "ResolveVersion":
            version = req["version"]
            if version in self.refs.get(package, {}):
                return self._instance(package, self.refs[package][version])
            owners = self.tags.get(package, {}).get(version)
            if owners is None:
                raise Failure(GrpcCode.NOT_FOUND, "no such tag")
            if len(owners) > 1:
                raise Failure(
                    GrpcCode.FAILED_PRECONDITION,
                    "ambiguity when resolving the tag, more than one instance has it",
                )
            return self._instance(package, owners[0])
        iid = instance_id_of_ref(req["instance"]) if "instance" in req else ""
        needs = ("DescribeInstance", "GetInstanceURL", "CreateRef", "AttachTags")
        if method in needs and iid not in pkg:
            raise Failure(GrpcCode.NOT_FOUND, "no such instance")
        if method == "DescribeInstance":
            out: dict[str, Any] = {"instance": self._instance(package, iid)}
            if req.get("describeTags"):
                out["tags"] = [
                    {"key": t.partition(":")[0], "value": t.partition(":")[2]}
                    for t, ids in sorted(self.tags.get(package, {}).items())
                    if iid in ids
                ]
            return out
        if method == "GetInstanceURL":
            token = hashlib.sha256(f"{len(self._tokens)}{iid}".encode()).hexdigest()[:16]
            self._tokens[token] = (package, iid)
            return {"signedUrl": f"http://{self.signed_host}:{self.port}/signed/{token}?sig=x"}
        if method == "ListInstances":
            return {"instances": [self._instance(package, i) for i in reversed(list(pkg))]}
        if method == "ListRefs":
            return {
                "refs": [
                    {"name": n, "package": package, "instance": object_ref(i)}
                    for n, i in self.refs.get(package, {}).items()
                ]
            }
        if method == "SearchInstances":
            wanted = [f"{t['key']}:{t['value']}" for t in req["tags"]]
            found = [
                i
                for i in reversed(list(pkg))
                if all(i in self.tags.get(package, {}).get(t, []) for t in wanted)
            ]
            return {"instances": [self._instance(package, i) for i in found]} if found else {}
        if method in ("CreateRef", "AttachTags"):
            if self.not_ready:
                self.not_ready -= 1
                raise Failure(GrpcCode.FAILED_PRECONDITION, "the instance is not ready yet")
            if method == "CreateRef":
                self.refs.setdefault(package, {})[req["name"]] = iid
            else:
                for tag in req["tags"]:
                    owners = self.tags.setdefault(package, {}).setdefault(
                        f"{tag['key']}:{tag['value']}", []
                    )
                    if iid not in owners:
                        owners.append(iid)
            return {}
        raise Failure(GrpcCode.UNIMPLEMENTED, f"unknown method {method}")

    def _instance(self, package: str, iid: str) -> dict[str, Any]:
        return {
            "package": package,
            "instance": object_ref(iid),
            "registeredBy": "user:someone@example.com",
            "registeredTs": "2026-01-02T03:04:05.123456Z",
        }

    def _publish(self, method: str, req: dict[str, Any]) -> dict[str, Any]:
        if method == "FinishUpload":
            upload = self._uploads[req["uploadOperationId"]]
            data = bytes(upload["data"])
            if sha256_iid(data) != upload["iid"]:
                return {"status": "ERRORED", "errorMessage": "hash mismatch"}
            self._cas[upload["iid"]] = data
            return {"status": "PUBLISHED", "operationId": req["uploadOperationId"]}
        package, iid = req["package"], instance_id_of_ref(req["instance"])
        if iid in self.instances.get(package, {}):
            return {"status": "ALREADY_REGISTERED", "instance": self._instance(package, iid)}
        if iid in self._cas:
            self.instances.setdefault(package, {})[iid] = self._cas[iid]
            return {"status": "REGISTERED", "instance": self._instance(package, iid)}
        op = f"op{len(self._uploads)}"
        self._uploads[op] = {"iid": iid, "data": bytearray()}
        url = f"http://{self.signed_host}:{self.port}/upload/{op}?upload_id=secret"
        return {
            "status": "NOT_UPLOADED",
            "uploadOp": {"operationId": op, "uploadUrl": url, "status": "UPLOADING"},
        }

    def put(self, op: str, content_range: str, chunk: bytes) -> tuple[int, dict[str, str]]:
        upload = self._uploads[op]
        data: bytearray = upload["data"]

        def progress() -> tuple[int, dict[str, str]]:
            return (308, {"Range": f"bytes=0-{len(data) - 1}"} if data else {})

        query = re.fullmatch(r"bytes \*/(\d+)", content_range)
        if query:
            return (200, {}) if len(data) == int(query.group(1)) else progress()
        start, end, total = map(
            int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range).groups()
        )  # type: ignore[union-attr]
        if self.failing_chunks:
            self.failing_chunks -= 1
            del data[start:]  # the storage lost what it had not confirmed
            return 503, {}
        assert start <= len(data) and end - start + 1 == len(chunk)
        data[start:] = chunk
        return (200, {}) if len(data) == total else progress()


class Failure(Exception):
    def __init__(self, code: GrpcCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: StandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_POST(self) -> None:
        state = self.state
        raw = self._body()
        match = re.fullmatch(r"/prpc/cipd\.(Repository|Storage)/(\w+)", self.path)
        if match is None:
            self._send(404, b"not found", {})
            return
        method = match.group(2)
        assert self.headers["Content-Type"] == "application/json"
        assert self.headers["Accept"] == "application/json"
        request = json.loads(raw)
        with state._lock:
            state.calls.append(Call(method, request, dict(self.headers)))
            scripted = state.script.get(method)
            if scripted:
                code, status, text = scripted.pop(0)
                headers = {"Content-Type": "text/plain; charset=utf-8"}
                if code is not None:
                    headers[CODE_HEADER] = str(int(code))
                self._send(status, text.encode() + b"\n", headers)
                return
            try:
                reply = state.answer(method, request)
            except Failure as failure:
                self._send(
                    http_status_for(failure.code),
                    failure.text.encode() + b"\n",
                    {CODE_HEADER: str(int(failure.code)), "Content-Type": "text/plain"},
                )
                return
        self._send(
            200,
            encode_response(reply),
            {
                CODE_HEADER: "0",
                "Content-Type": "application/json",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def do_GET(self) -> None:
        state = self.state
        match = re.fullmatch(r"/signed/(\w+)\?sig=x", self.path)
        with state._lock:
            state.downloads.append(dict(self.headers))
            if match is None or match.group(1) not in state._tokens:
                self._send(403, b"bad signature", {})
                return
            if state.failing_downloads:
                state.failing_downloads -= 1
                self._send(503, b"try later", {})
                return
            package, iid = state._tokens.pop(match.group(1))  # each URL works once
            data = state.instances[package][iid]
        if state.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        self._send(200, data, {"Content-Type": "application/octet-stream"})

    def do_PUT(self) -> None:
        state = self.state
        chunk = self._body()
        match = re.fullmatch(r"/upload/(\w+)\?upload_id=secret", self.path)
        assert match is not None
        with state._lock:
            state.puts.append(dict(self.headers))
            status, headers = state.put(match.group(1), self.headers["Content-Range"], chunk)
        self._send(status, b"", headers)


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    state = StandIn()
    handler = type("Handler", (_Handler,), {"state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{state.port}"
    finally:
        server.shutdown()
        server.server_close()


def repo_for(url: str, tmp_path: Path, **options: Any) -> CipdRepository:
    network = NetworkOptions(
        connect_timeout=5, stall_timeout=5, deadline=20, retries=2, cache_dir=tmp_path / "cache"
    )
    for key in ("auth_token", "auth_token_command", "retries"):
        if key in options:
            network = NetworkOptions(**{**network.__dict__, key: options.pop(key)})
    return CipdRepository(url, network=network, backoff=0.01, ready_interval=0.01, **options)


# --- which protocol ------------------------------------------------------------------------


def test_the_protocol_is_chosen_from_the_url_alone() -> None:
    assert cipd_service_url(DEFAULT_SERVICE_URL) == DEFAULT_SERVICE_URL
    assert cipd_service_url("https://Chrome-Infra-Packages.appspot.com:443/") == DEFAULT_SERVICE_URL
    assert cipd_service_url("https://example.com/repo") is None  # static layout
    assert cipd_service_url("http://127.0.0.1:8000") is None
    assert cipd_service_url("cipd+http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    listed = ["https://cipd.example.com", "cipd+http://127.0.0.1:8000"]
    assert cipd_service_url("https://cipd.example.com", listed) == "https://cipd.example.com"
    assert cipd_service_url("http://127.0.0.1:8000/", listed) == "http://127.0.0.1:8000"
    for bad in ("https://chrome-infra-packages.appspot.com/x", "cipd+https://h/path"):
        with pytest.raises(RepositoryError, match="expecting a root URL"):
            cipd_service_url(bad)
    with pytest.raises(RepositoryError, match=r"caproni\.cipd_services"):
        cipd_service_url("https://x.example", ["https://y.example/sub"])
    opened = open_repository(DEFAULT_SERVICE_URL)
    assert isinstance(opened, CipdRepository) and opened.url == DEFAULT_SERVICE_URL
    static = open_repository("http://127.0.0.1:9/repo")
    assert not isinstance(static, CipdRepository)
    listed_open = open_repository(
        "http://127.0.0.1:9", network=NetworkOptions(cipd_services=("http://127.0.0.1:9",))
    )
    assert isinstance(listed_open, CipdRepository)


def test_no_service_anywhere_means_the_default_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caproni_tasks.packages.pinning import EnsureSource

    ensure = tmp_path / "tools.ensure"
    ensure.write_text("a/b latest\n")
    source = EnsureSource.load(ensure)
    monkeypatch.delenv("CIPD_SERVICE_URL", raising=False)
    assert source.service_url(None, None).url == DEFAULT_SERVICE_URL
    monkeypatch.setenv("CIPD_SERVICE_URL", "cipd+http://127.0.0.1:1")
    assert source.service_url(None, None).url == "cipd+http://127.0.0.1:1"
    assert source.service_url(None, "cfg").url == "cfg"
    assert source.service_url("cli", "cfg").url == "cli"
    ensure.write_text("$ServiceURL https://s.example\na/b latest\n")
    assert EnsureSource.load(ensure).service_url("cli", "cfg").url == "https://s.example"


# --- resolving --------------------------------------------------------------------------------


def test_resolve_refs_tags_and_both_kinds_of_instance_id(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    state, url = stand_in
    new = state.add("a/b", b"one", refs=("latest",), tags=("version:1",))
    legacy = state.add("a/b", b"old", sha1=True, tags=("version:0",))
    repo = repo_for(url, tmp_path)
    assert repo.resolve_version("a/b", "latest") == new
    assert repo.resolve_version("a/b", "version:1") == new
    assert repo.resolve_version("a/b", "version:0") == legacy and len(legacy) == 40
    assert repo.resolve_version("a/b", new) == new  # checked with DescribeInstance
    assert repo.resolve_version("a/b", legacy) == legacy
    describe = [c.body for c in state.calls if c.method == "DescribeInstance"]
    assert describe[-1]["instance"] == {"hashAlgo": "SHA1", "hexDigest": legacy}
    assert describe[0]["instance"]["hashAlgo"] == "SHA256"
    assert all("Authorization" not in c.headers for c in state.calls)  # anonymous


def test_tags_are_cached_on_disk_refs_are_always_asked(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    state, url = stand_in
    iid = state.add("a/b", b"one", refs=("latest",), tags=("version:1",))
    for _ in range(2):  # two runs: two repository objects sharing the cache directory
        repo = repo_for(url, tmp_path)
        assert repo.resolve_version("a/b", "version:1") == iid
        assert repo.resolve_version("a/b", "latest") == iid
    asked = [c.body["version"] for c in state.calls if c.method == "ResolveVersion"]
    assert asked == ["version:1", "latest", "latest"]
    (cache_file,) = (tmp_path / "cache" / "@tags").iterdir()
    assert url in cache_file.read_text()
    # another service never sees these entries
    assert (
        repo_for(f"http://localhost:{state.port}", tmp_path).tag_cache.get("a/b", "version:1")
        is None
    )


def test_ambiguous_and_missing_versions(stand_in: tuple[StandIn, str], tmp_path: Path) -> None:
    state, url = stand_in
    state.add("a/b", b"one", tags=("dup:x",))
    state.add("a/b", b"two", tags=("dup:x",))
    repo = repo_for(url, tmp_path)
    with pytest.raises(AmbiguousVersionError, match="ambiguity") as ambiguous:
        repo.resolve_version("a/b", "dup:x")
    assert ambiguous.value.error_code == "invalid_version_error"
    with pytest.raises(PackageNotFoundError, match="no such package"):
        repo.resolve_version("no/such", "latest")
    with pytest.raises(VersionNotFoundError, match="no such tag"):
        repo.resolve_version("a/b", "version:9")
    with pytest.raises(InstanceNotFoundError):
        repo.resolve_version("a/b", sha256_iid(b"never"))
    assert state.count("ResolveVersion") == 3  # not retried: none is transient


def test_transient_codes_are_retried_others_are_not(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    state, url = stand_in
    iid = state.add("a/b", b"one", refs=("latest",))
    state.script["ResolveVersion"] = [
        (GrpcCode.UNAVAILABLE, 503, "Service unavailable"),
        (None, 503, "<html><body><h1>503</h1> front end busy</body></html>"),
    ]
    assert repo_for(url, tmp_path).resolve_version("a/b", "latest") == iid
    assert state.count("ResolveVersion") == 3
    # the code header decides, not the HTTP status: 200 with INVALID_ARGUMENT fails at once
    state.script["ResolveVersion"] = [(GrpcCode.INVALID_ARGUMENT, 200, "bad request")]
    with pytest.raises(RepositoryError, match="INVALID_ARGUMENT: bad request") as bad:
        repo_for(url, tmp_path).resolve_version("a/b", "latest")
    assert bad.value.error_code == "bad_argument_error"
    assert state.count("ResolveVersion") == 4
    # retries are bounded: three failures with retries=2 give up, with the Go client's code
    state.script["ResolveVersion"] = [(None, 502, "<p>bad gateway</p>")] * 3
    with pytest.raises(RepositoryError, match="without a X-Prpc-Grpc-Code header") as gone:
        repo_for(url, tmp_path).resolve_version("a/b", "latest")
    assert gone.value.error_code == "backend_unavailable_error"
    assert "<p>" not in str(gone.value) and state.count("ResolveVersion") == 7


# --- fetching ------------------------------------------------------------------------------


def test_fetch_checks_the_hash_and_retries_with_a_fresh_url(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    state, url = stand_in
    data = b"x" * 300_000
    iid = state.add("a/b", data)
    legacy = state.add("a/b", b"legacy bytes", sha1=True)
    state.failing_downloads = 1
    repo = repo_for(url, tmp_path, auth_token="s3cret")
    got: list[int] = []
    repo.fetch_instance("a/b", iid, tmp_path / "out", got.append)
    assert (tmp_path / "out").read_bytes() == data and sum(got) >= len(data)
    assert state.count("GetInstanceURL") == 2  # the retry asked for a new URL
    repo.fetch_instance("a/b", legacy, tmp_path / "legacy")
    assert (tmp_path / "legacy").read_bytes() == b"legacy bytes"
    for headers in state.downloads:  # the token never goes to a signed URL, bytes stay raw
        assert "Authorization" not in headers and headers["Accept-Encoding"] == "identity"
    assert all(c.headers["Authorization"] == "Bearer s3cret" for c in state.calls)
    state.corrupt = True
    with pytest.raises(HashMismatchError) as mismatch:
        repo.fetch_instance("a/b", iid, tmp_path / "bad")
    assert mismatch.value.error_code == "hash_mismatch_error"
    assert not (tmp_path / "bad").exists()
    assert "sig=" not in str(mismatch.value)  # signed URLs are secrets
    with pytest.raises(InstanceNotFoundError):
        repo.fetch_instance("a/b", sha256_iid(b"never"), tmp_path / "none")


# --- auth ---------------------------------------------------------------------------------


def test_anonymous_permission_denied_says_how_to_give_credentials(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    state, url = stand_in
    denied = 'prefix "secret/pkg" doesn\'t exist or not visible to unauthenticated callers'
    state.script["ResolveVersion"] = [(GrpcCode.PERMISSION_DENIED, 403, denied)]
    with pytest.raises(CipdAuthError) as anonymous:
        repo_for(url, tmp_path).resolve_version("secret/pkg", "latest")
    text = str(anonymous.value)
    assert anonymous.value.error_code == "auth_error"
    assert "does not exist, or it needs credentials" in text
    assert "caproni.auth_token" in text and "luci-auth token" in text
    state.script["ResolveVersion"] = [(GrpcCode.UNAUTHENTICATED, 401, "bad token")]
    with pytest.raises(CipdAuthError, match="refused") as refused:
        repo_for(url, tmp_path, auth_token="t0ken").resolve_version("secret/pkg", "latest")
    assert "t0ken" not in str(refused.value)


def test_token_command_runs_once_lazily_and_goes_only_to_the_service(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    state, url = stand_in
    state.signed_host = "localhost"  # signed URLs on another host than the service
    iid = state.add("a/b", b"payload", refs=("latest",))
    runs = tmp_path / "runs"
    script = tmp_path / "token.py"
    script.write_text(f"open({str(runs)!r}, 'a').write('x')\nprint('tok-123')\n")
    command = f"{sys.executable} {script}"
    repo = repo_for(url, tmp_path, auth_token_command=command)
    assert not runs.exists()  # lazily: nothing ran yet
    assert repo.resolve_version("a/b", "latest") == iid
    repo.fetch_instance("a/b", iid, tmp_path / "out")
    repo_for(url, tmp_path, auth_token_command=command).resolve_version("a/b", "latest")
    assert runs.read_text() == "x"  # once per process
    assert all(c.headers.get("Authorization") == "Bearer tok-123" for c in state.calls)
    assert state.downloads and all("Authorization" not in h for h in state.downloads)
    failing = f"{sys.executable} -c \"import sys; sys.exit('no credentials cached')\""
    with pytest.raises(CipdAuthError) as failed:
        repo_for(url, tmp_path, auth_token_command=failing).resolve_version("a/b", "latest")
    message = str(failed.value)
    assert "\n" not in message and "exit status 1" in message
    assert "no credentials cached" in message


# --- publishing -------------------------------------------------------------------------------


def test_publish_uploads_in_chunks_resumes_and_retries_not_ready(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    state, url = stand_in
    package, iid = build(tmp_path, "tools/big", {"blob": File(bytes(range(256)) * 400), "x": "y\n"})
    state.failing_chunks = 1
    state.not_ready = 2
    repo = repo_for(url, tmp_path, upload_chunk=16 * 1024, auth_token="pub")
    assert repo.register_instance(package) == iid
    assert state.instances["tools/big"][iid] == package.read_bytes()
    assert any(h["Content-Range"].startswith("bytes */") for h in state.puts)  # resumed
    assert all("Authorization" not in h for h in state.puts)
    repo.set_ref("tools/big", "latest", iid)
    repo.attach_tags("tools/big", iid, ["version:1", "git:abc"])
    assert repo.resolve_version("tools/big", "latest") == iid
    assert repo.search_instances("tools/big", ["version:1", "git:abc"]) == [iid]
    assert repo.search_instances("tools/big", ["version:2"]) == []
    assert repo.register_instance(package) == iid  # ALREADY_REGISTERED: no upload
    assert state.count("RegisterInstance") == 3 and state.count("FinishUpload") == 1
    described = repo.describe("tools/big")
    assert described.refs == {"latest": iid}
    assert described.tags == {"git:abc": (iid,), "version:1": (iid,)}
    assert described.instances[0].registered_at == "2026-01-02T03:04:05Z"
    assert repo.packages() == ["tools/big"]


# --- through the tasks ------------------------------------------------------------------------


run = invoke_captured


def test_ensure_installs_from_the_service_and_reports_errors_as_json(
    stand_in: tuple[StandIn, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, url = stand_in
    package, _iid = build(tmp_path, "tools/hello", {"bin/hello": File("hi\n", executable=True)})
    state.add("tools/hello", package.read_bytes(), refs=("latest",), tags=("version:1",))
    monkeypatch.setenv("INVOKE_CAPRONI_CACHE_DIR", str(tmp_path / "cache"))
    ensure = tmp_path / "tools.ensure"
    root = tmp_path / "root"
    ensure.write_text(f"$ServiceURL cipd+{url}\n@Subdir bin\ntools/hello version:1\n")
    args = ["ensure", "--ensure-file", str(ensure), "--root", str(root)]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    assert (root / "bin/bin/hello").read_text() == "hi\n"
    code, _, err = run(capsys, *args)  # second run: the tag comes from the cache
    assert code == 0, err
    assert state.count("ResolveVersion") == 1 and state.count("GetInstanceURL") == 1

    ensure.write_text(f"$ServiceURL cipd+{url}\n@Subdir bin\ntools/hello version:9\n")
    out_json = tmp_path / "out.json"
    code, _, err = run(capsys, *args, "--json", str(out_json))
    assert code == 1 and "no such tag" in err
    report = json.loads(out_json.read_text())
    assert report["error_code"] == "invalid_version_error"
    assert report["error_details"] == {
        "package": "tools/hello",
        "version": "version:9",
        "subdir": "bin",
    }


def test_resolved_versions_make_no_resolve_calls_and_verify_checks_presence(
    stand_in: tuple[StandIn, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, url = stand_in
    package, iid = build(tmp_path, "tools/hello", {"hello": "hi\n"})
    state.add("tools/hello", package.read_bytes(), refs=("latest",))
    monkeypatch.setenv("INVOKE_CAPRONI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INVOKE_CAPRONI_CIPD_SERVICES", url)
    ensure = tmp_path / "tools.ensure"
    ensure.write_text(
        f"$ServiceURL {url}\n$ResolvedVersions tools.versions\n\ntools/hello latest\n"
    )
    code, _, err = run(capsys, "ensure.resolve", "--ensure-file", str(ensure))
    assert code == 0, err
    assert iid in (tmp_path / "tools.versions").read_text()
    resolves = state.count("ResolveVersion")
    code, _, err = run(
        capsys, "ensure", "--ensure-file", str(ensure), "--root", str(tmp_path / "r")
    )
    assert code == 0, err
    assert state.count("ResolveVersion") == resolves  # the versions file answered
    assert (tmp_path / "r/hello").read_text() == "hi\n"
    code, _out, err = run(capsys, "ensure.verify", "--ensure-file", str(ensure))
    assert code == 0, err

    missing = sha256_iid(b"gone")
    ensure.write_text(f"$ServiceURL {url}\n\ntools/hello {missing}\n")
    code, _, err = run(capsys, "ensure.verify", "--ensure-file", str(ensure))
    assert code == 1 and f"pinned instance tools/hello@{missing}" in err
    assert state.calls[-1].method == "DescribeInstance"


def test_pkg_tasks_against_the_service_and_search_of_a_directory(
    stand_in: tuple[StandIn, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state, url = stand_in
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool").write_text("v1\n")
    for repo in (f"cipd+{url}", str(tmp_path / "dir-repo")):
        code, out, err = run(
            capsys,
            "pkg.create", "--in", str(src), "--name", "tools/t",
            "--tag", "version:1", "--ref", "latest", "--repo", repo,
        )  # fmt: skip
        assert code == 0, err
        iid = out.strip()
        code, out, err = run(capsys, "pkg.search", "--tag", "version:1", "--repo", repo)
        assert code == 0 and out == f"tools/t:{iid}\n", err
        code, out, _ = run(
            capsys, "pkg.search", "--tag", "version:2", "--name", "tools/t", "--repo", repo
        )
        assert out == ""
        code, out, err = run(capsys, "pkg.list", "--repo", repo)
        assert code == 0 and out == "tools/t\n", err
        code, out, err = run(
            capsys, "pkg.set-tag", "tools/t@latest", "--tag", "git:abc", "--repo", repo
        )
        assert code == 0, err
        code, out, err = run(capsys, "pkg.describe", "tools/t", "--repo", repo)
        assert code == 0 and "git:abc" in out and "latest" in out, err
    assert "tools/t" in state.instances


# --- against the real server (invoke pkg.serve) ---------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from helpers_serve import CipdServer

    with CipdServer(tmp_path / "served", write_token="tok-secret-42") as server:
        yield server


def test_real_server_resolve_fetch_and_errors(served: Any, tmp_path: Path) -> None:
    from helpers_packages import publish

    one = publish(served.repo_dir, "a/b", {"f": "1\n"}, refs=("latest",), tags=("version:1",))
    two = publish(served.repo_dir, "a/b", {"f": "2\n"}, tags=("dup:x",))
    publish(served.repo_dir, "a/b", {"f": "3\n"}, tags=("dup:x",))
    repo = repo_for(f"cipd+{served.url}", tmp_path)
    assert repo.resolve_version("a/b", "latest") == one
    assert repo.resolve_version("a/b", "version:1") == one
    assert repo.resolve_version("a/b", two) == two
    with pytest.raises(AmbiguousVersionError):
        repo.resolve_version("a/b", "dup:x")
    with pytest.raises(RepositoryError) as missing_package:
        repo.resolve_version("no/such", "latest")
    assert missing_package.value.error_code == "invalid_version_error"
    with pytest.raises(VersionNotFoundError):
        repo.resolve_version("a/b", "version:9")
    with pytest.raises(InstanceNotFoundError):
        repo.resolve_version("a/b", sha256_iid(b"never"))
    repo.fetch_instance("a/b", one, tmp_path / "one")
    assert sha256_iid((tmp_path / "one").read_bytes()) == one
    with pytest.raises(RepositoryError):  # a hash that no file has: nothing is kept
        repo.fetch_instance("a/b", sha1_iid(b"nothing"), tmp_path / "none")
    assert not (tmp_path / "none").exists()
    assert repo.packages() == ["a/b"]
    assert repo.search_instances("a/b", ["version:1"]) == [one]
    assert repo.describe("a/b").refs == {"latest": one}
    with pytest.raises(CipdAuthError, match="needs credentials"):  # anonymous write
        repo.set_ref("a/b", "stable", one)


def test_real_server_publish_then_install(
    served: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVOKE_CAPRONI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("INVOKE_CAPRONI_AUTH_TOKEN", served.write_token)
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/tool").write_text("#!/bin/sh\necho tool\n")
    service = f"cipd+{served.url}"
    code, out, err = run(
        capsys,
        "pkg.create", "--in", str(src), "--name", "tools/tool/linux-amd64",
        "--ref", "latest", "--tag", "version:2.0", "--repo", service,
    )  # fmt: skip
    assert code == 0, err
    iid = out.strip()
    assert served.write_token not in out + err
    ensure = tmp_path / "tools.ensure"
    ensure.write_text(
        f"$ServiceURL {service}\n$ResolvedVersions tools.versions\n"
        "$VerifiedPlatform linux-amd64\n\ntools/tool/${platform} version:2.0\n"
    )
    code, out, err = run(capsys, "ensure.resolve", "--ensure-file", str(ensure))
    assert code == 0, err
    assert iid in (tmp_path / "tools.versions").read_text()
    code, out, err = run(capsys, "ensure.verify", "--ensure-file", str(ensure))
    assert code == 0, err
    plain = tmp_path / "plain.ensure"
    plain.write_text(f"$ServiceURL {service}\n\ntools/tool/linux-amd64 latest\n")
    root = tmp_path / "root"
    code, out, err = run(capsys, "ensure", "--ensure-file", str(plain), "--root", str(root))
    assert code == 0, err
    assert (root / "bin/tool").read_text() == "#!/bin/sh\necho tool\n"
    code, out, err = run(capsys, "pkg.search", "--tag", "version:2.0", "--repo", service)
    assert code == 0 and out == f"tools/tool/linux-amd64:{iid}\n", err
