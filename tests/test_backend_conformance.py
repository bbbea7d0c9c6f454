"""One conformance suite for every repository backend: the same questions, the same answers.

Each backend is set up the way a user would have it: a directory repository, that
directory served statically over HTTP, and (where the server is available) the same
directory behind `pkg.serve` spoken to with the CIPD protocol. Publishing goes through
the backend itself where it is writable, else into the directory it serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_packages import StaticServer, build

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.format import instance_id_of_file
from caproni_tasks.packages.repository import (
    AmbiguousVersionError,
    HashMismatchError,
    InstanceNotFoundError,
    NetworkOptions,
    PackageNotFoundError,
    ReadOnlyRepositoryError,
    Repository,
    RepositoryError,
    UnsupportedOperationError,
    VersionNotFoundError,
)

Publisher = Callable[[str, str, list[str], list[str]], str]


@dataclass
class Backend:
    """A repository under test and how to put a package into it:
    ``publish(package, content, refs, tags) -> instance ID``."""

    name: str
    repo: Repository
    publish: Publisher
    writable: bool


def _publisher(writer: Repository, work: Path) -> Publisher:
    def publish(package: str, content: str, refs: list[str], tags: list[str]) -> str:
        package_file, _ = build(work, package, {"data.txt": content})
        iid = writer.register_instance(package_file)
        if tags:
            writer.attach_tags(package, iid, tags)
        for ref in refs:
            writer.set_ref(package, ref, iid)
        return iid

    return publish


def _directory(tmp_path: Path) -> Iterator[Backend]:
    local = LocalRepository(tmp_path / "repo")
    yield Backend("directory", local, _publisher(local, tmp_path / "work"), True)


def _static_http(tmp_path: Path) -> Iterator[Backend]:
    from caproni_tasks.packages.backends.static_http import HttpRepository

    local = LocalRepository(tmp_path / "repo")
    (tmp_path / "repo").mkdir()
    with StaticServer(tmp_path / "repo") as server, HttpRepository(server.url) as remote:
        yield Backend("static_http", remote, _publisher(local, tmp_path / "work"), False)


def _cipd_service(tmp_path: Path) -> Iterator[Backend]:
    from helpers_serve import CipdServer

    from caproni_tasks.packages.backends.cipd import CipdRepository

    (tmp_path / "repo").mkdir()
    with CipdServer(tmp_path / "repo", write_token="secret") as server:
        options = NetworkOptions(auth_token="secret", cache_dir=tmp_path / "tag-cache")
        with CipdRepository(f"cipd+{server.url}", network=options) as remote:
            yield Backend("cipd", remote, _publisher(remote, tmp_path / "work"), True)


BACKENDS: dict[str, Callable[[Path], Iterator[Backend]]] = {
    "directory": _directory,
    "static_http": _static_http,
    "cipd": _cipd_service,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from BACKENDS[request.param](tmp_path)


def test_refs_tags_and_instance_ids_resolve(backend: Backend, tmp_path: Path) -> None:
    v1 = backend.publish("t/p", "one", ["stable"], ["version:1"])
    v2 = backend.publish("t/p", "two", ["latest"], ["version:2"])
    assert backend.repo.resolve_version("t/p", "stable") == v1
    assert backend.repo.resolve_version("t/p", "latest") == v2
    assert backend.repo.resolve_version("t/p", "version:1") == v1
    assert backend.repo.resolve_version("t/p", v2) == v2


def test_an_ambiguous_tag_is_an_error(backend: Backend, tmp_path: Path) -> None:
    backend.publish("t/p", "one", [], ["os:linux"])
    backend.publish("t/p", "two", [], ["os:linux"])
    with pytest.raises(AmbiguousVersionError, match="more than one instance"):
        backend.repo.resolve_version("t/p", "os:linux")


def test_missing_packages_and_versions(backend: Backend, tmp_path: Path) -> None:
    iid = backend.publish("t/p", "one", ["latest"], [])
    with pytest.raises(PackageNotFoundError):
        backend.repo.resolve_version("t/nothing", "latest")
    with pytest.raises(VersionNotFoundError):
        backend.repo.resolve_version("t/p", "no-such-ref")
    with pytest.raises(VersionNotFoundError):
        backend.repo.resolve_version("t/p", "version:9")
    missing = iid[:-5] + ("AAAAC" if not iid.endswith("AAAAC") else "BBBBC")
    with pytest.raises((InstanceNotFoundError, VersionNotFoundError)):
        backend.repo.resolve_version("t/p", missing)


def test_fetch_checks_the_hash(backend: Backend, tmp_path: Path) -> None:
    iid = backend.publish("t/p", "payload", ["latest"], [])
    (stored,) = (tmp_path / "repo").rglob(iid)
    expected = stored.read_bytes()
    dest = tmp_path / "fetched"
    seen: list[int] = []
    backend.repo.fetch_instance("t/p", iid, dest, seen.append)
    assert dest.read_bytes() == expected and sum(seen) == len(expected)
    assert instance_id_of_file(dest) == iid

    # Corrupt what the backend stores: the fetch fails and leaves nothing behind.
    stored.chmod(0o644)
    stored.write_bytes(expected[:-1] + bytes([expected[-1] ^ 1]))
    broken = tmp_path / "broken"
    with pytest.raises((HashMismatchError, RepositoryError)):
        backend.repo.fetch_instance("t/p", iid, broken)
    assert not broken.exists()


def test_describe_lists_instances_refs_and_tags(backend: Backend, tmp_path: Path) -> None:
    v1 = backend.publish("t/p", "one", ["stable"], ["version:1"])
    v2 = backend.publish("t/p", "two", ["latest"], ["version:2"])
    description = backend.repo.describe("t/p")
    assert {i.instance_id for i in description.instances} == {v1, v2}
    assert dict(description.refs) == {"stable": v1, "latest": v2}
    assert set(description.tags["version:1"]) == {v1}
    with pytest.raises(PackageNotFoundError):
        backend.repo.describe("t/nothing")


def test_known_size_is_the_file_size_or_unknown(backend: Backend, tmp_path: Path) -> None:
    iid = backend.publish("t/p", "sized", [], [])
    (stored,) = (tmp_path / "repo").rglob(iid)
    size = stored.stat().st_size
    assert backend.repo.known_size("t/p", iid) in (size, None)


def test_search_by_tags(backend: Backend, tmp_path: Path) -> None:
    v1 = backend.publish("t/p", "one", [], ["os:linux", "arch:amd64"])
    v2 = backend.publish("t/p", "two", [], ["os:linux", "arch:arm64"])
    assert backend.repo.search_instances("t/p", ["os:linux"]) == [v2, v1]
    assert backend.repo.search_instances("t/p", ["os:linux", "arch:amd64"]) == [v1]
    assert backend.repo.search_instances("t/p", ["os:mac"]) == []
    assert backend.repo.search_instances("t/nothing", ["os:linux"]) == []


def test_listing_or_a_clear_refusal(backend: Backend, tmp_path: Path) -> None:
    backend.publish("t/a", "a", [], [])
    backend.publish("t/b/c", "c", [], [])
    try:
        listed = backend.repo.packages()
    except UnsupportedOperationError as error:
        assert "cannot list" in str(error)
    else:
        assert listed == ["t/a", "t/b/c"]


def test_publish_where_writable(backend: Backend, tmp_path: Path) -> None:
    assert backend.repo.writable == backend.writable
    if not backend.writable:
        with pytest.raises(ReadOnlyRepositoryError):
            backend.repo.set_ref("t/w", "latest", "x" * 40)
        return
    iid = backend.publish("t/w", "written", ["latest"], ["k:v"])
    assert backend.publish("t/w", "written", [], []) == iid, "registering again is no error"
    assert backend.repo.resolve_version("t/w", "k:v") == iid
