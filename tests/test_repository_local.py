"""The local directory repository: register, refs, tags, resolve, fetch, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_packages import build, publish

from caproni_tasks.ensure import InvalidRef, InvalidTag
from caproni_tasks.packages.backends import open_repository
from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.format import PackageFormatError, instance_id_of_file
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
def repo(tmp_path: Path) -> LocalRepository:
    return LocalRepository(tmp_path / "repo")


def test_is_a_writable_repository_opened_by_url_or_path(tmp_path: Path) -> None:
    root = tmp_path / "my repo"
    for url in (root.as_uri(), str(root), "file://localhost" + str(root)):
        opened = open_repository(url)
        assert isinstance(opened, LocalRepository)
        assert isinstance(opened, Repository) and opened.writable
        assert opened.root == root
    relative = open_repository("sub/dir", base_dir=tmp_path)
    assert isinstance(relative, LocalRepository) and relative.root == tmp_path / "sub/dir"
    assert LocalRepository(root).url == root.as_uri()


def test_register_places_instance_and_index(tmp_path: Path, repo: LocalRepository) -> None:
    pkg, iid = build(tmp_path, "tools/hello", {"a": "1"})
    assert repo.register_instance(pkg) == iid
    instance = repo.root / "tools/hello/@instances" / iid
    assert instance.read_bytes() == pkg.read_bytes()
    assert instance_id_of_file(instance) == iid
    index = json.loads((repo.root / "tools/hello/@index.json").read_text())
    assert index["format"] == 1 and index["package"] == "tools/hello"
    assert [i["instance_id"] for i in index["instances"]] == [iid]
    assert index["instances"][0]["size"] == pkg.stat().st_size
    assert index["instances"][0]["registered_at"].endswith("Z")
    assert index["refs"] == {} and index["tags"] == {}
    assert repo.resolve_version("tools/hello", iid) == iid
    assert not list((repo.root / "tools/hello/@instances").glob(".*"))


def test_register_is_idempotent(tmp_path: Path, repo: LocalRepository) -> None:
    pkg, iid = build(tmp_path, "tools/hello", {"a": "1"})
    repo.register_instance(pkg)
    before = (repo.root / "tools/hello/@index.json").read_bytes()
    assert repo.register_instance(pkg) == iid
    assert (repo.root / "tools/hello/@index.json").read_bytes() == before


def test_register_refuses_broken_packages(tmp_path: Path, repo: LocalRepository) -> None:
    junk = tmp_path / "junk.cipd"
    junk.write_bytes(b"nope")
    with pytest.raises(PackageFormatError):
        repo.register_instance(junk)
    assert not repo.root.exists() or not any(repo.root.rglob("*"))


def test_refs_move_and_tags_accumulate(tmp_path: Path, repo: LocalRepository) -> None:
    one = publish(repo.root, "a/b", {"v": "1"}, refs=["latest", "stable"], tags=["version:1"])
    assert repo.resolve_version("a/b", "latest") == one
    two = publish(repo.root, "a/b", {"v": "2"}, refs=["latest"], tags=["version:2", "k:x y"])
    assert repo.resolve_version("a/b", "latest") == two
    assert repo.resolve_version("a/b", "stable") == one
    assert repo.resolve_version("a/b", "version:1") == one
    assert repo.resolve_version("a/b", "version:2") == two
    assert repo.resolve_version("a/b", "k:x y") == two
    desc = repo.describe("a/b")
    assert [i.instance_id for i in desc.instances] == [one, two]
    assert desc.instances[0].refs == ("stable",) and desc.instances[0].tags == ("version:1",)
    assert desc.instances[1].refs == ("latest",)
    assert desc.instances[1].tags == ("k:x y", "version:2")
    assert desc.refs == {"latest": two, "stable": one}
    assert desc.tags["version:1"] == (one,)


def test_tag_on_two_instances_is_ambiguous(repo: LocalRepository) -> None:
    publish(repo.root, "a/b", {"v": "1"}, tags=["version:1"])
    publish(repo.root, "a/b", {"v": "2"}, tags=["version:1"])
    with pytest.raises(AmbiguousVersionError) as caught:
        repo.resolve_version("a/b", "version:1")
    assert str(caught.value) == "ambiguity when resolving the tag, more than one instance has it"
    assert caught.value.error_code == "invalid_version_error"


def test_unknown_things_are_clear_errors(repo: LocalRepository) -> None:
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        repo.resolve_version("a/b", "latest")
    iid = publish(repo.root, "a/b", {"v": "1"}, refs=["latest"])
    with pytest.raises(PackageNotFoundError, match='no such package "a/c"'):
        repo.resolve_version("a/c", "latest")
    with pytest.raises(VersionNotFoundError, match='no such ref "stable"'):
        repo.resolve_version("a/b", "stable")
    with pytest.raises(VersionNotFoundError, match='no such tag "version:9"'):
        repo.resolve_version("a/b", "version:9")
    missing = iid[:-2] + ("A" if iid[-2] != "A" else "B") + "C"
    with pytest.raises(InstanceNotFoundError, match="no such instance"):
        repo.resolve_version("a/b", missing)
    with pytest.raises(VersionNotFoundError, match="bad version"):
        repo.resolve_version("a/b", "NOT A VERSION")
    with pytest.raises(PackageNotFoundError, match="invalid package name"):
        repo.resolve_version("../etc", "latest")
    with pytest.raises(InstanceNotFoundError):
        repo.set_ref("a/b", "latest", missing)
    with pytest.raises(PackageNotFoundError):
        repo.attach_tags("x/y", iid, ["k:v"])
    assert not (repo.root / "x").exists()


def test_bad_refs_and_tags_are_refused_before_writing(repo: LocalRepository) -> None:
    iid = publish(repo.root, "a/b", {"v": "1"})
    before = (repo.root / "a/b/@index.json").read_bytes()
    with pytest.raises(InvalidRef, match="invalid ref name"):
        repo.set_ref("a/b", "Latest", iid)
    with pytest.raises(InvalidTag):
        repo.attach_tags("a/b", iid, ["ok:1", "no-colon"])
    assert (repo.root / "a/b/@index.json").read_bytes() == before


def test_fetch_streams_and_verifies(tmp_path: Path, repo: LocalRepository) -> None:
    big = os.urandom(3 << 20)
    iid = publish(repo.root, "a/b", {"big": big})
    dest = tmp_path / "out" / "x.cipd"
    seen: list[int] = []
    repo.fetch_instance("a/b", iid, dest, seen.append)
    assert instance_id_of_file(dest) == iid
    assert sum(seen) == dest.stat().st_size and len(seen) >= 2


def test_fetch_of_tampered_instance_fails_and_leaves_nothing(
    tmp_path: Path, repo: LocalRepository
) -> None:
    iid = publish(repo.root, "a/b", {"v": "1"})
    instance = repo.root / "a/b/@instances" / iid
    instance.chmod(0o644)
    data = bytearray(instance.read_bytes())
    data[10] ^= 1
    instance.write_bytes(bytes(data))
    dest = tmp_path / "dl" / "x"
    with pytest.raises(HashMismatchError, match=iid):
        repo.fetch_instance("a/b", iid, dest)
    assert list(dest.parent.iterdir()) == []


def test_fetch_of_missing_instance(tmp_path: Path, repo: LocalRepository) -> None:
    iid = publish(repo.root, "a/b", {"v": "1"})
    (repo.root / "a/b/@instances" / iid).unlink()
    with pytest.raises(InstanceNotFoundError):
        repo.fetch_instance("a/b", iid, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_corrupt_index_is_reported(repo: LocalRepository) -> None:
    publish(repo.root, "a/b", {"v": "1"})
    (repo.root / "a/b/@index.json").write_text("{broken")
    with pytest.raises(RepositoryError, match=r"corrupt package index .*@index\.json"):
        repo.resolve_version("a/b", "latest")


def test_packages_lists_every_package(repo: LocalRepository) -> None:
    publish(repo.root, "a/b", {"v": "1"})
    publish(repo.root, "a/b/c", {"v": "1"})
    publish(repo.root, "z", {"v": "1"})
    assert repo.packages() == ["a/b", "a/b/c", "z"]


WRITER = """
import sys
from pathlib import Path
from caproni_tasks.packages.format import build_package
from caproni_tasks.packages.backends.directory import LocalRepository

repo = LocalRepository(sys.argv[1])
work = Path(sys.argv[2])
me = sys.argv[3]
for i in range(int(sys.argv[4])):
    src = work / f"src-{me}-{i}"
    src.mkdir()
    (src / "file").write_text(f"{me}/{i}")
    pkg = work / f"{me}-{i}.cipd"
    iid = build_package(src, "shared/pkg", pkg)
    assert repo.register_instance(pkg) == iid
    repo.set_ref("shared/pkg", f"w{me}", iid)
    repo.attach_tags("shared/pkg", iid, [f"writer:{me}", "common:tag"])
    print(iid, flush=True)
"""


def test_concurrent_writers_lose_nothing(
    tmp_path: Path, repo: LocalRepository, subprocess_env: dict[str, str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    writers, each = 4, 6
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(repo.root), str(work), str(n), str(each)],
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env,
        )
        for n in range(writers)
    ]
    produced: dict[int, list[str]] = {}
    for n, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        produced[n] = out.split()
    index = json.loads((repo.root / "shared/pkg/@index.json").read_text())
    registered = [i["instance_id"] for i in index["instances"]]
    every = [iid for ids in produced.values() for iid in ids]
    assert sorted(registered) == sorted(every) and len(set(every)) == writers * each
    for n, ids in produced.items():
        assert index["refs"][f"w{n}"] == ids[-1]
        assert index["tags"][f"writer:{n}"] == ids
    assert sorted(index["tags"]["common:tag"]) == sorted(every)
    for iid in every:
        assert instance_id_of_file(repo.root / "shared/pkg/@instances" / iid) == iid
    leftovers = [p.name for p in (repo.root / "shared/pkg").rglob(".*")]
    assert leftovers == []
