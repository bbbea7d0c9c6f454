"""The HTTP repository against a real http.server on 127.0.0.1 serving a local one."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_packages import StaticServer, free_port, publish, self_signed_certificate

from caproni_tasks.packages.backends import open_repository
from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.backends.static_http import HttpRepository
from caproni_tasks.packages.format import instance_id_of_file
from caproni_tasks.packages.repository import (
    AmbiguousVersionError,
    BackendUnavailableError,
    HashMismatchError,
    InstanceNotFoundError,
    PackageNotFoundError,
    Repository,
    RepositoryError,
    VersionNotFoundError,
)


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def server(repo_dir: Path) -> Iterator[StaticServer]:
    repo_dir.mkdir()
    with StaticServer(repo_dir) as running:
        yield running


def test_opened_by_url_and_read_only(server: StaticServer) -> None:
    repo = open_repository(server.url + "/")
    assert isinstance(repo, HttpRepository) and isinstance(repo, Repository)
    assert not repo.writable
    assert repo.url == server.url
    assert HttpRepository("http://user:secret@example.com/r/").url == "http://example.com/r"


def test_many_resolves_cost_one_request_per_package(repo_dir: Path, server: StaticServer) -> None:
    one = publish(repo_dir, "a/b", {"v": "1"}, refs=["stable"], tags=["version:1"])
    two = publish(repo_dir, "a/b", {"v": "2"}, refs=["latest"], tags=["version:2"])
    other = publish(repo_dir, "c", {"v": "1"}, refs=["latest"])
    repo = HttpRepository(server.url)
    results: list[tuple[str, str]] = []

    def worker() -> None:
        for _ in range(10):
            for version in ("latest", "stable", "version:1", "version:2", one):
                results.append((version, repo.resolve_version("a/b", version)))
            results.append(("c", repo.resolve_version("c", "latest")))
            assert repo.describe("a/b").refs == {"latest": two, "stable": one}

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 8 * 10 * 6
    expected = {"latest": two, "stable": one, "version:1": one, "version:2": two, one: one}
    expected["c"] = other
    assert all(expected[version] == iid for version, iid in results)
    assert server.count("/a/b/@index.json") == 1
    assert server.count("/c/@index.json") == 1
    assert len(server.requests) == 2


def test_missing_package_is_remembered_too(server: StaticServer) -> None:
    repo = HttpRepository(server.url)
    for _ in range(3):
        with pytest.raises(PackageNotFoundError, match='no such package "x/y"'):
            repo.resolve_version("x/y", "latest")
    assert server.requests == ["/x/y/@index.json"]


def test_resolve_errors_match_local_ones(repo_dir: Path, server: StaticServer) -> None:
    publish(repo_dir, "a/b", {"v": "1"}, tags=["version:1"])
    publish(repo_dir, "a/b", {"v": "2"}, tags=["version:1"])
    repo = HttpRepository(server.url)
    with pytest.raises(AmbiguousVersionError, match="more than one instance has it"):
        repo.resolve_version("a/b", "version:1")
    with pytest.raises(VersionNotFoundError, match='no such ref "latest"'):
        repo.resolve_version("a/b", "latest")


def test_download_streams_and_verifies(
    repo_dir: Path, server: StaticServer, tmp_path: Path
) -> None:
    iids = [publish(repo_dir, "a/b", {"big": os.urandom(2 << 20), "n": str(n)}) for n in range(3)]
    repo = HttpRepository(server.url)
    server.reset()
    for iid in iids:
        seen: list[int] = []
        dest = tmp_path / "dl" / iid
        repo.fetch_instance("a/b", iid, dest, seen.append)
        assert instance_id_of_file(dest) == iid
        assert sum(seen) == dest.stat().st_size and len(seen) > 1
    assert server.requests == [f"/a/b/@instances/{iid}" for iid in iids]
    assert server.connections == 1  # kept alive and reused
    repo.close()


def test_tampered_instance_is_a_hash_mismatch(
    repo_dir: Path, server: StaticServer, tmp_path: Path
) -> None:
    iid = publish(repo_dir, "a/b", {"v": "1"})
    instance = repo_dir / "a/b/@instances" / iid
    instance.chmod(0o644)
    data = bytearray(instance.read_bytes())
    data[-5] ^= 0xFF
    instance.write_bytes(bytes(data))
    dest = tmp_path / "dl" / "x"
    with pytest.raises(HashMismatchError, match=iid):
        HttpRepository(server.url).fetch_instance("a/b", iid, dest)
    assert list(dest.parent.iterdir()) == []


def test_truncated_download_leaves_nothing(
    repo_dir: Path, server: StaticServer, tmp_path: Path
) -> None:
    iid = publish(repo_dir, "a/b", {"big": os.urandom(200_000)})
    server.truncate[f"/a/b/@instances/{iid}"] = 50_000
    dest = tmp_path / "dl" / "x"
    repo = HttpRepository(server.url, retries=1)
    with pytest.raises(BackendUnavailableError, match="truncated"):
        repo.fetch_instance("a/b", iid, dest)
    assert list(dest.parent.iterdir()) == []
    assert server.count(f"/a/b/@instances/{iid}") == 2  # retried once
    del server.truncate[f"/a/b/@instances/{iid}"]
    repo.fetch_instance("a/b", iid, dest)  # the connection pool recovered
    assert instance_id_of_file(dest) == iid


def test_truncated_index(repo_dir: Path, server: StaticServer) -> None:
    publish(repo_dir, "a/b", {"v": "1"}, refs=["latest"])
    server.truncate["/a/b/@index.json"] = 10
    with pytest.raises(BackendUnavailableError, match="truncated"):
        HttpRepository(server.url, retries=0).resolve_version("a/b", "latest")


def test_missing_instance_is_not_found(
    repo_dir: Path, server: StaticServer, tmp_path: Path
) -> None:
    iid = publish(repo_dir, "a/b", {"v": "1"})
    (repo_dir / "a/b/@instances" / iid).unlink()
    with pytest.raises(InstanceNotFoundError, match="no such instance"):
        HttpRepository(server.url).fetch_instance("a/b", iid, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_server_errors_are_backend_unavailable_with_the_url(
    repo_dir: Path, server: StaticServer
) -> None:
    publish(repo_dir, "a/b", {"v": "1"}, refs=["latest"])
    server.fail_with["/a/b/@index.json"] = 503
    repo = HttpRepository(server.url, retries=1)
    with pytest.raises(BackendUnavailableError) as caught:
        repo.resolve_version("a/b", "latest")
    assert f"{server.url}/a/b/@index.json: HTTP 503" in str(caught.value)
    assert caught.value.error_code == "backend_unavailable_error"
    assert server.count("/a/b/@index.json") == 2
    server.fail_with["/a/b/@index.json"] = 500
    with pytest.raises(BackendUnavailableError, match="HTTP 500"):
        repo.resolve_version("a/b", "latest")
    del server.fail_with["/a/b/@index.json"]
    assert repo.resolve_version("a/b", "latest")  # failures are not cached


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/repo", "http://[::1/repo"])
def test_malformed_urls_are_repository_errors(url: str) -> None:
    with pytest.raises(RepositoryError, match="bad repository URL"):
        open_repository(url)


def test_server_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/repo"
    repo = HttpRepository(url, retries=0)
    with pytest.raises(BackendUnavailableError, match=f"cannot reach {url}/a/b/@index.json"):
        repo.resolve_version("a/b", "latest")


def test_paths_are_percent_encoded(server: StaticServer) -> None:
    repo = HttpRepository(server.url + "/with space")
    assert repo.index_url("a/b") == f"{server.url}/with%20space/a/b/@index.json"
    with pytest.raises(PackageNotFoundError):
        repo.resolve_version("a/b", "latest")
    assert server.raw_paths == ["/with%20space/a/b/@index.json"]


def test_redirects_are_followed(repo_dir: Path, tmp_path: Path) -> None:
    import http.server

    iid = publish(repo_dir, "a/b", {"v": "1"}, refs=["latest"])
    with StaticServer(repo_dir) as target:

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", target.url + self.path.removeprefix("/old"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        thread = threading.Thread(target=front.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            repo = HttpRepository(f"http://127.0.0.1:{front.server_address[1]}/old")
            assert repo.resolve_version("a/b", "latest") == iid
            repo.fetch_instance("a/b", iid, tmp_path / "x")
            assert instance_id_of_file(tmp_path / "x") == iid
        finally:
            front.shutdown()
            front.server_close()


def test_kept_alive_connection_closed_by_server_is_reopened(
    repo_dir: Path, server: StaticServer
) -> None:
    names = [f"p/{n}" for n in range(3)]
    for name in names:
        publish(repo_dir, name, {"v": name}, refs=["latest"])
    server.drop_idle = True
    repo = HttpRepository(server.url, retries=0)  # no retries: the reconnect must do it
    for name in names:
        assert repo.resolve_version(name, "latest")
    assert server.connections == 3


def test_credentials_in_the_url_are_sent_as_basic_auth(
    repo_dir: Path, server: StaticServer
) -> None:
    publish(repo_dir, "a/b", {"v": "1"}, refs=["latest"])
    url = server.url.replace("http://", "http://me:s%40cret@")
    repo = HttpRepository(url)
    assert "cret" not in repo.url
    repo.resolve_version("a/b", "latest")
    assert server.headers[-1]["Authorization"] == "Basic bWU6c0BjcmV0"  # me:s@cret


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_a_trusted_certificate(
    repo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = publish(repo_dir, "a/b", {"v": "1"}, refs=["latest"])
    cert, key = self_signed_certificate(tmp_path)
    with StaticServer(repo_dir, tls=(cert, key)) as server:
        assert server.url.startswith("https://")
        # Untrusted: a clear backend error, no download.
        untrusted = HttpRepository(server.url)
        with pytest.raises(BackendUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.resolve_version("a/b", "latest")
        assert server.requests == []  # and not retried: the handshake failed once
        # Trusted through the standard SSL_CERT_FILE variable.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        repo = HttpRepository(server.url)
        assert repo.resolve_version("a/b", "latest") == iid
        repo.fetch_instance("a/b", iid, tmp_path / "x")
        assert instance_id_of_file(tmp_path / "x") == iid


def test_known_size_comes_from_an_index_already_read(repo_dir: Path, server: StaticServer) -> None:
    iid = publish(repo_dir, "a/b", {"f": "x" * 1000}, refs=["latest"])
    size = (repo_dir / "a/b/@instances" / iid).stat().st_size
    repo = HttpRepository(server.url)
    server.reset()
    assert repo.known_size("a/b", iid) is None  # never a request just for a size
    assert server.requests == []
    assert repo.resolve_version("a/b", "latest") == iid
    assert repo.known_size("a/b", iid) == size
    assert repo.known_size("a/b", "C" * 44) is None
    assert LocalRepository(repo_dir).known_size("a/b", iid) == size
    assert LocalRepository(repo_dir).known_size("a/nothing", iid) is None
    repo.close()


def test_proxies_come_from_the_environment(
    server: StaticServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The static server stands in for a plain-HTTP proxy: it receives the absolute URL
    # (and, not being a proxy, answers 404).
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    repo = HttpRepository("http://repository.invalid")
    with pytest.raises(PackageNotFoundError):
        repo.resolve_version("a/b", "latest")
    assert server.raw_paths == ["http://repository.invalid/a/b/@index.json"]
    monkeypatch.setenv("NO_PROXY", "repository.invalid")
    with pytest.raises(BackendUnavailableError, match=r"cannot reach http://repository\.invalid"):
        HttpRepository("http://repository.invalid", retries=0).resolve_version("a/b", "latest")


def test_the_http_client_is_imported_on_first_use_only() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from caproni_tasks.packages.backends import open_repository; "
        "repo = open_repository('http://127.0.0.1:9/r'); "
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False"]
