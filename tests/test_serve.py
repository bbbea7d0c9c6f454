"""``pkg.serve``: the static layout and the CIPD protocol over real HTTP (httpx)."""

from __future__ import annotations

import gzip
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers_packages import build, publish, raw_package
from helpers_serve import CipdServer
from helpers_session import make_project

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.cipd_protocol import XSSI_PREFIX, object_ref
from caproni_tasks.packages.format import instance_id_of_file
from caproni_tasks.packages.serve.signing import UrlSigner

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

TOKEN = "s3cret-token"
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
AMBIGUOUS = "ambiguity when resolving the tag, more than one instance has it"


class Rpc:
    """A minimal pRPC JSON caller that returns (grpc code, parsed body or text)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)
        self.token = token

    def raw(self, service: str, method: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(f"/prpc/{service}/{method}", **kwargs)

    def __call__(
        self,
        method: str,
        body: dict[str, Any],
        *,
        service: str = "cipd.Repository",
        auth: bool = True,
    ) -> tuple[int, Any]:
        headers = dict(JSON_HEADERS)
        if auth and self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        response = self.raw(service, method, content=json.dumps(body), headers=headers)
        return decode(response)


def decode(response: httpx.Response) -> tuple[int, Any]:
    code = int(response.headers["X-Prpc-Grpc-Code"])
    if code == 0:
        assert response.content.startswith(XSSI_PREFIX)
        assert response.headers["content-type"].startswith("application/json")
        return code, json.loads(response.content[len(XSSI_PREFIX) :])
    assert response.headers["content-type"].startswith("text/plain")
    assert "Traceback" not in response.text
    return code, response.text.strip()


def ref_of(iid: str) -> dict[str, str]:
    return object_ref(iid)


@pytest.fixture
def repo(repo_dir: Path, tmp_path: Path) -> dict[str, str]:
    """tools/hello with three instances (refs, tags, an ambiguous tag) and nested packages."""
    work = tmp_path / "work"
    ids = {
        "one": publish(
            repo_dir,
            "tools/hello",
            {"a": "1"},
            refs=["stable"],
            tags=["version:1", "dup:x", "os:linux"],
            work_dir=work,
        ),
        "two": publish(
            repo_dir, "tools/hello", {"a": "2"}, tags=["version:2", "dup:x"], work_dir=work
        ),
        "three": publish(
            repo_dir,
            "tools/hello",
            {"a": "3"},
            refs=["latest"],
            tags=["version:3", "os:linux"],
            work_dir=work,
        ),
    }
    for name in ("tools/hello/linux-amd64", "tools/other", "infra/x/y/z"):
        publish(repo_dir, name, {"f": name}, refs=["latest"], work_dir=work)
    return ids


@pytest.fixture
def server(repo_dir: Path, repo: dict[str, str]) -> Iterator[CipdServer]:
    with CipdServer(repo_dir, write_token=TOKEN, secret=b"k" * 32) as running:
        yield running


@pytest.fixture
def rpc(server: CipdServer) -> Rpc:
    return Rpc(server.url, TOKEN)


# --- the static layout -------------------------------------------------------------------


def test_static_layout_serves_index_and_instances(
    server: CipdServer, repo: dict[str, str], repo_dir: Path
) -> None:
    index = httpx.get(f"{server.url}/tools/hello/@index.json")
    assert index.status_code == 200
    assert index.json()["refs"]["latest"] == repo["three"]
    blob = httpx.get(f"{server.url}/tools/hello/@instances/{repo['one']}")
    assert blob.status_code == 200
    assert blob.content == (repo_dir / "tools/hello/@instances" / repo["one"]).read_bytes()
    for missing in (
        "/tools/nope/@index.json",
        f"/tools/nope/@instances/{repo['one']}",
        "/tools/hello/@instances/not-an-id",
        "/Bad/Name/@index.json",
        "/tools/hello/@index.lock",
        "/@uploads/x",
    ):
        assert httpx.get(server.url + missing).status_code == 404, missing


def test_static_http_repository_reads_the_server(server: CipdServer, repo: dict[str, str]) -> None:
    from caproni_tasks.packages.backends import open_repository

    static = open_repository(server.url)
    assert static.resolve_version("tools/hello", "version:2") == repo["two"]


# --- reads --------------------------------------------------------------------------------


def test_resolve_version(rpc: Rpc, repo: dict[str, str]) -> None:
    code, body = rpc("ResolveVersion", {"package": "tools/hello", "version": "latest"})
    assert code == 0
    assert body["package"] == "tools/hello"
    assert body["instance"] == ref_of(repo["three"])
    assert body["registeredTs"].endswith("Z")
    assert rpc("ResolveVersion", {"package": "tools/hello", "version": "version:1"})[1][
        "instance"
    ] == ref_of(repo["one"])
    assert rpc("ResolveVersion", {"package": "tools/hello", "version": repo["two"]})[1][
        "instance"
    ] == ref_of(repo["two"])
    cases = {
        ("tools/nope", "latest"): (5, "no such package: tools/nope"),
        ("tools/hello", "nope"): (5, "no such ref"),
        ("tools/hello", "version:9"): (5, "no such tag"),
        ("tools/hello", "A" * 43 + "C"): (5, "no such instance"),
        ("tools/hello", "dup:x"): (9, AMBIGUOUS),
        ("tools/hello", "Not A Version"): (3, 'bad version "Not A Version"'),
        ("Bad Name", "latest"): (3, "bad package name"),
        ("tools/hello", ""): (3, "version"),
    }
    for (package, version), (want_code, want_text) in cases.items():
        code, text = rpc("ResolveVersion", {"package": package, "version": version})
        assert code == want_code, (package, version, text)
        assert want_text in text


def test_http_status_follows_the_code(rpc: Rpc) -> None:
    statuses = {
        ("tools/nope", "latest"): (404, "5"),
        ("tools/hello", "dup:x"): (400, "9"),
        ("tools/hello", "x y"): (400, "3"),
    }
    for (package, version), (status, code) in statuses.items():
        response = rpc.raw(
            "cipd.Repository",
            "ResolveVersion",
            json={"package": package, "version": version},
            headers=JSON_HEADERS,
        )
        assert (response.status_code, response.headers["x-prpc-grpc-code"]) == (status, code)
        assert response.headers["x-content-type-options"] == "nosniff"


def test_get_instance_url_signed_and_expiring(
    server: CipdServer, rpc: Rpc, repo: dict[str, str], repo_dir: Path
) -> None:
    code, body = rpc("GetInstanceURL", {"package": "tools/hello", "instance": ref_of(repo["one"])})
    assert code == 0
    url = body["signedUrl"]
    assert url.startswith(server.url + "/")
    got = httpx.get(url)
    assert got.status_code == 200
    assert got.content == (repo_dir / "tools/hello/@instances" / repo["one"]).read_bytes()

    path = f"/@signed/tools/hello/+/{repo['one']}"
    signer = UrlSigner(b"k" * 32)
    expired = signer.sign(path, expires=int(time.time()) - 1)
    assert httpx.get(server.url + expired).status_code == 403
    assert "expired" in httpx.get(server.url + expired).text
    forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert httpx.get(forged).status_code == 403
    other = url.replace(repo["one"], repo["two"])  # a signature is for one path only
    assert httpx.get(other).status_code == 403
    assert httpx.get(server.url + path).status_code == 403  # unsigned
    wrong_key = UrlSigner(b"x" * 32).sign(path)
    assert httpx.get(server.url + wrong_key).status_code == 403

    code, text = rpc(
        "GetInstanceURL", {"package": "tools/hello", "instance": ref_of("A" * 43 + "C")}
    )
    assert (code, text) == (5, "no such instance")
    code, text = rpc("GetInstanceURL", {"package": "tools/hello", "instance": {"hashAlgo": "MD5"}})
    assert code == 3


def test_dl_redirects_to_a_signed_url(server: CipdServer, repo: dict[str, str]) -> None:
    response = httpx.get(f"{server.url}/dl/tools/hello/+/version:2")
    assert response.status_code == 302
    assert response.headers["X-Cipd-Instance"] == repo["two"]
    assert httpx.get(response.headers["location"]).status_code == 200
    assert httpx.get(f"{server.url}/dl/tools/hello/+/nope").status_code == 404
    assert httpx.get(f"{server.url}/dl/tools/hello/+/dup:x").status_code == 400
    assert httpx.get(f"{server.url}/dl/tools/hello").status_code == 400


def test_describe_instance(rpc: Rpc, repo: dict[str, str]) -> None:
    request = {"package": "tools/hello", "instance": ref_of(repo["one"])}
    code, body = rpc("DescribeInstance", request)
    assert code == 0
    assert set(body) == {"instance"}
    code, body = rpc("DescribeInstance", {**request, "describeRefs": True, "describe_tags": True})
    assert body["refs"] == [
        {"name": "stable", "package": "tools/hello", "instance": ref_of(repo["one"])}
    ]
    assert body["tags"] == [
        {"key": "dup", "value": "x"},
        {"key": "os", "value": "linux"},
        {"key": "version", "value": "1"},
    ]
    code, body = rpc(
        "DescribeInstance", {**request, "instance": ref_of(repo["two"]), "describeRefs": True}
    )
    assert "refs" not in body  # default values are left out
    assert rpc("DescribeInstance", {**request, "package": "tools/x"})[0] == 5


def test_list_prefix(rpc: Rpc) -> None:
    assert rpc("ListPrefix", {})[1] == {"prefixes": ["infra", "tools"]}
    assert rpc("ListPrefix", {"prefix": "tools"})[1] == {
        "packages": ["tools/hello", "tools/other"],
        "prefixes": ["tools/hello"],
    }
    assert rpc("ListPrefix", {"prefix": "tools/", "recursive": True})[1] == {
        "packages": ["tools/hello", "tools/hello/linux-amd64", "tools/other"],
        "prefixes": ["tools/hello"],
    }
    assert rpc("ListPrefix", {"prefix": "", "recursive": True})[1]["prefixes"] == [
        "infra",
        "infra/x",
        "infra/x/y",
        "tools",
        "tools/hello",
    ]
    assert rpc("ListPrefix", {"prefix": "nothing/here"})[1] == {}
    assert rpc("ListPrefix", {"prefix": "Bad Prefix"})[0] == 3


def test_list_instances_pages_newest_first(rpc: Rpc, repo: dict[str, str]) -> None:
    code, body = rpc("ListInstances", {"package": "tools/hello"})
    assert [i["instance"] for i in body["instances"]] == [
        ref_of(repo[k]) for k in ("three", "two", "one")
    ]
    assert "nextPageToken" not in body
    code, first = rpc("ListInstances", {"package": "tools/hello", "pageSize": "2"})  # int as string
    assert code == 0
    assert len(first["instances"]) == 2
    token = first["nextPageToken"]
    _code, second = rpc(
        "ListInstances", {"package": "tools/hello", "page_size": 2, "page_token": token}
    )
    assert [i["instance"] for i in second["instances"]] == [ref_of(repo["one"])]
    assert "nextPageToken" not in second
    assert rpc("ListInstances", {"package": "tools/hello", "pageToken": "bogus"})[0] == 3
    assert rpc("ListInstances", {"package": "tools/hello", "pageSize": -1})[0] == 3
    assert rpc("ListInstances", {"package": "tools/none"})[0] == 5


def test_search_instances_all_tags_must_match(rpc: Rpc, repo: dict[str, str]) -> None:
    def found(tags: list[dict[str, str]], **extra: Any) -> list[Any]:
        code, body = rpc("SearchInstances", {"package": "tools/hello", "tags": tags, **extra})
        assert code == 0, body
        return [i["instance"] for i in body.get("instances", [])]

    linux = {"key": "os", "value": "linux"}
    assert found([linux]) == [ref_of(repo["three"]), ref_of(repo["one"])]
    assert found([linux, {"key": "dup", "value": "x"}]) == [ref_of(repo["one"])]
    assert found([{"key": "version", "value": "9"}]) == []
    assert found([linux], pageSize=1) == [ref_of(repo["three"])]
    assert rpc("SearchInstances", {"package": "tools/hello"})[0] == 3
    assert rpc("SearchInstances", {"package": "tools/hello", "tags": [{"key": "BAD"}]})[0] == 3


def test_list_refs(rpc: Rpc, repo: dict[str, str]) -> None:
    _code, body = rpc("ListRefs", {"package": "tools/hello"})
    assert body == {
        "refs": [
            {"name": "latest", "package": "tools/hello", "instance": ref_of(repo["three"])},
            {"name": "stable", "package": "tools/hello", "instance": ref_of(repo["one"])},
        ]
    }
    assert rpc("ListRefs", {"package": "tools/none"}) == (5, "no such package: tools/none")


# --- protocol rules -------------------------------------------------------------------------


def test_protocol_rules(server: CipdServer, rpc: Rpc, repo: dict[str, str]) -> None:
    resolve = {"package": "tools/hello", "version": "latest"}

    def post(content: bytes, **headers: str) -> tuple[int, Any]:
        return decode(
            rpc.raw("cipd.Repository", "ResolveVersion", content=content, headers=headers)
        )

    for body in (b"{", b"[1]", b'"x"', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        code, text = post(body, **JSON_HEADERS)
        assert code == 3, (body[:10], text)
    assert post(json.dumps({"package": 5, "version": "latest"}).encode(), **JSON_HEADERS)[0] == 3
    assert post(json.dumps({"package": None, "version": "latest"}).encode(), **JSON_HEADERS)[0] == 3
    unknown = {**resolve, "futureField": {"a": [1]}, "other": 1}
    assert post(json.dumps(unknown).encode(), **JSON_HEADERS)[0] == 0
    assert post(json.dumps(resolve).encode())[0] == 0  # no headers: JSON assumed
    legacy = "application/prpc; encoding=json"
    assert post(json.dumps(resolve).encode(), **{"Content-Type": legacy, "Accept": legacy})[0] == 0
    binary = "application/prpc; encoding=binary"
    assert post(b"\x0a\x03abc", **{"Content-Type": binary})[0] == 3
    refused = rpc.raw("cipd.Repository", "ResolveVersion", json=resolve, headers={"Accept": binary})
    assert (refused.status_code, refused.headers["x-prpc-grpc-code"]) == (406, "3")
    zipped = gzip.compress(json.dumps(resolve).encode())
    assert post(zipped, **JSON_HEADERS, **{"Content-Encoding": "gzip"})[0] == 0
    assert post(b"not gzip", **JSON_HEADERS, **{"Content-Encoding": "gzip"})[0] == 3

    for service, method in (
        ("cipd.Repository", "Nope"),
        ("cipd.Nope", "X"),
        ("cipd.Repository", "DeleteRef"),
        ("cipd.Storage", "BeginUpload"),
    ):
        response = rpc.raw(service, method, json={}, headers=JSON_HEADERS)
        assert (response.status_code, response.headers["x-prpc-grpc-code"]) == (501, "12")
    got = httpx.get(f"{server.url}/prpc/cipd.Repository/ResolveVersion")
    assert got.headers["x-prpc-grpc-code"] == "12"
    options = httpx.options(f"{server.url}/prpc/cipd.Repository/ResolveVersion")
    assert options.status_code == 200
    assert "POST" in options.headers["access-control-allow-methods"]


def test_instance_ref_forms(rpc: Rpc, repo: dict[str, str]) -> None:
    digest = ref_of(repo["one"])["hexDigest"]
    for instance in (
        {"hash_algo": "SHA256", "hex_digest": digest},
        {"hashAlgo": 2, "hexDigest": digest},
    ):
        code, _ = rpc("DescribeInstance", {"package": "tools/hello", "instance": instance})
        assert code == 0
    for bad in (
        {"hashAlgo": "SHA256", "hexDigest": digest.upper()},
        {"hashAlgo": "SHA256", "hexDigest": digest[:-2]},
        {"hashAlgo": "SHA256"},
        "x",
        None,
    ):
        code, _ = rpc("DescribeInstance", {"package": "tools/hello", "instance": bad})
        assert code == 3, bad


# --- writes --------------------------------------------------------------------------------


def _publish(rpc: Rpc, package_file: Path, package: str, chunks: int = 3) -> tuple[str, str]:
    """The Go client's publish flow; returns (instance ID, final RegisterInstance status)."""
    iid = instance_id_of_file(package_file)
    request = {"package": package, "instance": ref_of(iid)}
    code, body = rpc("RegisterInstance", request)
    assert code == 0, body
    if body["status"] != "NOT_UPLOADED":
        return iid, body["status"]
    op = body["uploadOp"]
    assert op["status"] == "UPLOADING"
    data = package_file.read_bytes()
    size = len(data)
    step = -(-size // chunks)
    for start in range(0, size, step):
        end = min(start + step, size) - 1
        put = httpx.put(
            op["uploadUrl"],
            content=data[start : end + 1],
            headers={"Content-Range": f"bytes {start}-{end}/{size}"},
        )
        assert put.status_code == (200 if end == size - 1 else 308), put.text
    code, done = rpc(
        "FinishUpload", {"uploadOperationId": op["operationId"]}, service="cipd.Storage"
    )
    assert code == 0, done
    assert done["status"] == "PUBLISHED", done
    assert done["object"] == ref_of(iid)
    code, body = rpc("RegisterInstance", request)
    assert code == 0, body
    return iid, body["status"]


def test_resumable_upload_in_chunks_with_status_query(
    server: CipdServer, rpc: Rpc, tmp_path: Path, repo_dir: Path
) -> None:
    package_file, iid = build(tmp_path, "tools/new", {"big": os.urandom(300_000), "x": "y"})
    data = package_file.read_bytes()
    size = len(data)
    code, body = rpc("RegisterInstance", {"package": "tools/new", "instance": ref_of(iid)})
    assert body["status"] == "NOT_UPLOADED"
    url = body["uploadOp"]["uploadUrl"]
    assert "Authorization" not in httpx.Request("PUT", url).headers

    first = httpx.put(url, content=data[:100_000], headers={"Content-Range": "bytes 0-99999/*"})
    assert (first.status_code, first.headers["range"]) == (308, "bytes=0-99999")
    status = httpx.put(url, content=b"", headers={"Content-Range": f"bytes */{size}"})
    assert (status.status_code, status.headers["range"]) == (308, "bytes=0-99999")
    # a chunk that overlaps what the server has: the known part is skipped
    second = httpx.put(
        url, content=data[50_000:200_000], headers={"Content-Range": f"bytes 50000-199999/{size}"}
    )
    assert (second.status_code, second.headers["range"]) == (308, "bytes=0-199999")
    gap = httpx.put(
        url, content=data[250_000:], headers={"Content-Range": f"bytes 250000-{size - 1}/{size}"}
    )
    assert (gap.status_code, gap.headers["range"]) == (308, "bytes=0-199999")
    short = httpx.put(
        url,
        content=data[200_000:200_010],
        headers={"Content-Range": f"bytes 200000-200019/{size}", "Content-Length": "10"},
    )
    assert short.status_code == 400
    changed = httpx.put(url, content=b"", headers={"Content-Range": f"bytes */{size + 1}"})
    assert changed.status_code == 400
    code, text = rpc(
        "FinishUpload",
        {"uploadOperationId": body["uploadOp"]["operationId"]},
        service="cipd.Storage",
    )
    assert code == 9 and "not complete" in text
    last = httpx.put(
        url, content=data[200_000:], headers={"Content-Range": f"bytes 200000-{size - 1}/{size}"}
    )
    assert last.status_code == 200
    assert (
        httpx.put(url, content=b"", headers={"Content-Range": f"bytes */{size}"}).status_code == 200
    )
    assert not (repo_dir / "tools/new").exists()  # nothing in place before verification

    code, done = rpc(
        "FinishUpload",
        {"upload_operation_id": body["uploadOp"]["operationId"]},
        service="cipd.Storage",
    )
    assert done["status"] == "PUBLISHED"
    code, again = rpc(
        "FinishUpload",
        {"uploadOperationId": body["uploadOp"]["operationId"]},
        service="cipd.Storage",
    )
    assert again["status"] == "PUBLISHED"  # idempotent
    assert (
        rpc("RegisterInstance", {"package": "tools/new", "instance": ref_of(iid)})[1]["status"]
        == "REGISTERED"
    )
    assert (
        rpc("RegisterInstance", {"package": "tools/new", "instance": ref_of(iid)})[1]["status"]
        == "ALREADY_REGISTERED"
    )
    assert (repo_dir / "tools/new/@instances" / iid).read_bytes() == data
    assert list((repo_dir / "@uploads").glob("*.part")) == []


def test_publish_then_ref_and_tags(rpc: Rpc, tmp_path: Path, server: CipdServer) -> None:
    package_file, _ = build(tmp_path, "tools/hello", {"a": "4"})
    iid, status = _publish(rpc, package_file, "tools/hello")
    assert status == "REGISTERED"
    instance = ref_of(iid)
    assert rpc("CreateRef", {"name": "latest", "package": "tools/hello", "instance": instance}) == (
        0,
        {},
    )
    assert rpc(
        "AttachTags",
        {
            "package": "tools/hello",
            "instance": instance,
            "tags": [{"key": "version", "value": "4"}],
        },
    ) == (0, {})
    for version in ("latest", "version:4", iid):
        _code, body = rpc("ResolveVersion", {"package": "tools/hello", "version": version})
        assert body["instance"] == instance
    missing = ref_of("A" * 43 + "C")
    assert rpc("CreateRef", {"name": "latest", "package": "tools/hello", "instance": missing}) == (
        5,
        "no such instance",
    )
    assert rpc("CreateRef", {"name": "x", "package": "tools/none", "instance": instance})[0] == 5
    assert (
        rpc("CreateRef", {"name": "BAD REF", "package": "tools/hello", "instance": instance})[0]
        == 3
    )
    assert rpc("AttachTags", {"package": "tools/hello", "instance": instance, "tags": []})[0] == 3
    assert (
        rpc(
            "AttachTags",
            {
                "package": "tools/hello",
                "instance": instance,
                "tags": [{"key": "k", "value": " lead"}],
            },
        )[0]
        == 3
    )


def test_finish_upload_refuses_bad_bytes(rpc: Rpc, tmp_path: Path, repo_dir: Path) -> None:
    good, iid = build(tmp_path, "tools/new", {"a": "good"})
    evil, _ = build(tmp_path, "tools/new", {"a": "evil"})
    not_a_package = tmp_path / "blob"
    not_a_package.write_bytes(b"plain bytes, not a zip")
    other_name = raw_package(tmp_path / "other.zip", [("f", "x")], package="tools/other-name")
    cases = [
        (iid, evil.read_bytes(), "hash mismatch"),
        (instance_id_of_file(not_a_package), not_a_package.read_bytes(), "not a valid package"),
        (instance_id_of_file(other_name), other_name.read_bytes(), "not a valid package"),
    ]
    for instance_id, data, why in cases:
        code, body = rpc(
            "RegisterInstance", {"package": "tools/new", "instance": ref_of(instance_id)}
        )
        assert code == 0
        op = body["uploadOp"]
        assert httpx.put(op["uploadUrl"], content=data).status_code == 200
        _code, done = rpc(
            "FinishUpload", {"uploadOperationId": op["operationId"]}, service="cipd.Storage"
        )
        assert done["status"] == "ERRORED", done
        assert why in done["errorMessage"]
        assert str(repo_dir) not in done["errorMessage"]
        assert (
            httpx.put(
                op["uploadUrl"], content=b"", headers={"Content-Range": "bytes */1"}
            ).status_code
            == 410
        )
        again = rpc("RegisterInstance", {"package": "tools/new", "instance": ref_of(instance_id)})
        assert again[1]["status"] == "NOT_UPLOADED"
    assert not (repo_dir / "tools/new").exists()
    assert list((repo_dir / "@uploads").glob("*.part")) == [] or all(
        p.stat().st_size == 0 for p in (repo_dir / "@uploads").glob("*.part")
    )
    _, status = _publish(rpc, good, "tools/new")
    assert status == "REGISTERED"


def test_cancel_upload(rpc: Rpc, tmp_path: Path) -> None:
    package_file, iid = build(tmp_path, "tools/new", {"a": "1"})
    code, body = rpc("RegisterInstance", {"package": "tools/new", "instance": ref_of(iid)})
    assert code == 0
    op = body["uploadOp"]
    _code, canceled = rpc(
        "CancelUpload", {"uploadOperationId": op["operationId"]}, service="cipd.Storage"
    )
    assert canceled["status"] == "CANCELED"
    assert httpx.put(op["uploadUrl"], content=package_file.read_bytes()).status_code == 410
    assert rpc("FinishUpload", {"uploadOperationId": "nope"}, service="cipd.Storage") == (
        5,
        "no such upload operation",
    )
    assert (
        httpx.put(op["uploadUrl"].replace(op["operationId"], "nope"), content=b"x").status_code
        == 404
    )


def test_write_token_enforced(server: CipdServer, repo: dict[str, str], repo_dir: Path) -> None:
    request = {"name": "moved", "package": "tools/hello", "instance": ref_of(repo["one"])}
    anonymous = Rpc(server.url)
    assert anonymous("CreateRef", request)[0] == 16
    response = anonymous.raw("cipd.Repository", "CreateRef", json=request, headers=JSON_HEADERS)
    assert response.status_code == 401
    assert Rpc(server.url, "wrong")("CreateRef", request)[0] == 7
    basic = anonymous.raw(
        "cipd.Repository",
        "CreateRef",
        json=request,
        headers={**JSON_HEADERS, "Authorization": "Basic eDp5"},
    )
    assert basic.headers["x-prpc-grpc-code"] == "16"
    for method, service in (
        ("RegisterInstance", "cipd.Repository"),
        ("AttachTags", "cipd.Repository"),
        ("FinishUpload", "cipd.Storage"),
        ("CancelUpload", "cipd.Storage"),
    ):
        assert anonymous(method, {}, service=service)[0] == 16
    assert anonymous("ResolveVersion", {"package": "tools/hello", "version": "latest"})[0] == 0
    assert "moved" not in LocalRepository(repo_dir).read_index("tools/hello").refs
    assert Rpc(server.url, TOKEN)("CreateRef", request) == (0, {})


def test_read_only_server_refuses_writes(repo_dir: Path, repo: dict[str, str]) -> None:
    with CipdServer(repo_dir) as server:
        rpc = Rpc(server.url, "anything")
        request = {"package": "tools/hello", "instance": ref_of(repo["one"])}
        code, text = rpc("RegisterInstance", request)
        assert code == 7 and "read-only" in text
        assert rpc("ResolveVersion", {"package": "tools/hello", "version": "latest"})[0] == 0
    assert not (repo_dir / "@uploads").exists()


def test_concurrent_register_of_one_instance(
    rpc: Rpc, server: CipdServer, tmp_path: Path, repo_dir: Path
) -> None:
    package_file, iid = build(tmp_path, "tools/race", {"f": os.urandom(200_000)})
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def publisher() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(_publish(Rpc(server.url, TOKEN), package_file, "tools/race")[1])
        except BaseException as error:
            errors.append(error)

    def reader() -> None:
        barrier.wait(timeout=10)
        client = Rpc(server.url)
        for _ in range(20):
            code, _ = client("ResolveVersion", {"package": "tools/hello", "version": "latest"})
            assert code == 0

    threads = [threading.Thread(target=publisher) for _ in range(2)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == ["ALREADY_REGISTERED", "REGISTERED"]
    index = LocalRepository(repo_dir).read_index("tools/race")
    assert [r.instance_id for r in index.instances] == [iid]
    assert not any((repo_dir / "@uploads" / "verified").iterdir())


# --- the task ------------------------------------------------------------------------------


def _lines(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_invoke_pkg_serve_subprocess(
    tmp_path: Path,
    repo_dir: Path,
    repo: dict[str, str],
    invoke_cmd: list[str],
    subprocess_env: dict[str, str],
) -> None:
    project = make_project(tmp_path / "project")
    subprocess_env["CAPRONI_SERVE_WRITE_TOKEN"] = TOKEN
    child = subprocess.Popen(
        [*invoke_cmd, "pkg.serve", "--repo", str(repo_dir), "--port", "0"],
        cwd=project,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _lines(child.stdout).get(timeout=30)
        assert line.startswith("$ServiceURL http://127.0.0.1:")
        url = line.split()[1]
        rpc = Rpc(url, TOKEN)
        _code, body = rpc("ResolveVersion", {"package": "tools/hello", "version": "latest"})
        assert body["instance"] == ref_of(repo["three"])
        assert rpc(
            "CreateRef", {"name": "x", "package": "tools/hello", "instance": ref_of(repo["one"])}
        ) == (0, {})
        os.kill(child.pid, signal.SIGTERM)
        assert child.wait(timeout=30) == 0
        assert "Traceback" not in (child.stderr.read() if child.stderr else "")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_invoke_pkg_serve_refusals(
    tmp_path: Path, invoke_cmd: list[str], subprocess_env: dict[str, str]
) -> None:
    project = make_project(tmp_path / "project")
    subprocess_env.pop("CAPRONI_SERVE_WRITE_TOKEN", None)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*invoke_cmd, "pkg.serve", *argv],
            cwd=project,
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = run("--repo", str(tmp_path / "missing"), "--port", "0")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert run("--repo", "x", "--port", "70000").returncode == 2
    assert run("--repo", "https://example.com").returncode == 2
    assert run("--repo", "x", "--write-token-env", "NOT_SET_ANYWHERE").returncode == 2
    for result in (missing,):
        assert "Traceback" not in result.stderr


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from caproni_tasks.packages.serve import ServeExtraMissingError, require_serve_extra

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ServeExtraMissingError, match=r"pip install 'caproni-tasks\[serve\]'"):
        require_serve_extra()


def test_task_list_does_not_import_the_server(subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys, caproni_tasks; caproni_tasks.namespace(); "
        "assert not {'starlette', 'uvicorn'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], env=subprocess_env, check=True, timeout=60)
