"""The installer as a library: install / update / remove, repairs, refusals, the cache."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers_packages import File, FileSpec, Link, RawEntry, publish, raw_package, symlink_entry

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.cache import InstanceCache
from caproni_tasks.packages.format import instance_id_of_file
from caproni_tasks.packages.index import InstanceRecord, PackageIndex
from caproni_tasks.packages.installer import Desired, Installer, InstallError
from caproni_tasks.packages.repository import Repository
from caproni_tasks.packages.state import RootState


class CountingRepository:
    """Wraps a repository and counts what is asked of it."""

    def __init__(self, inner: Repository) -> None:
        self.inner = inner
        self.fetches: list[str] = []

    @property
    def url(self) -> str:
        return self.inner.url

    def resolve_version(self, package: str, version: str) -> str:
        return self.inner.resolve_version(package, version)

    def fetch_instance(self, package: str, instance_id: str, dest: Path, progress=None) -> None:  # type: ignore[no-untyped-def]
        self.fetches.append(instance_id)
        self.inner.fetch_instance(package, instance_id, dest, progress)

    def describe(self, package: str):  # type: ignore[no-untyped-def]
        return self.inner.describe(package)

    def known_size(self, package: str, instance_id: str) -> int | None:
        return None  # a repository that cannot tell sizes cheaply

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the rest of the protocol, unchanged


@pytest.fixture
def make_installer(
    repo_dir: Path, root: Path, tmp_path: Path
) -> Callable[..., tuple[Installer, CountingRepository]]:
    def make(target: Path | None = None) -> tuple[Installer, CountingRepository]:
        repo = CountingRepository(LocalRepository(repo_dir))
        cache = InstanceCache(tmp_path / "cache")
        return Installer(target or root, cache, lambda: repo), repo

    return make


def tree(root: Path) -> dict[str, str]:
    """Everything under ``root`` except the state dir and the ``.gitignore`` the installer
    puts into a root it creates: path -> content / link / dir."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".cipd" or dirpath != str(root)]
        if dirpath == str(root) and ".gitignore" in filenames:
            filenames = [f for f in filenames if f != ".gitignore"]
        base = Path(dirpath)
        for name in dirnames:
            if (base / name).is_symlink():
                out[(base / name).relative_to(root).as_posix()] = "-> " + os.readlink(base / name)
            else:
                out[(base / name).relative_to(root).as_posix() + "/"] = ""
        for name in filenames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            out[rel] = "-> " + os.readlink(path) if path.is_symlink() else path.read_text()
    return out


def plant(repo_dir: Path, package: str, zip_path: Path, ref: str = "latest") -> str:
    """Put any file into the local repository as an instance of ``package`` (no checks)."""
    iid = instance_id_of_file(zip_path)
    instances = repo_dir / package / "@instances"
    instances.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zip_path, instances / iid)
    index = PackageIndex(package, [InstanceRecord(iid, "2026-01-01T00:00:00Z", 1)], {ref: iid})
    (repo_dir / package / "@index.json").write_bytes(index.to_json())
    return iid


V1: dict[str, FileSpec] = {
    "bin/tool": File("#!/bin/sh\necho v1\n", executable=True),
    "share/doc.txt": "doc v1",
    "share/old/gone.txt": "gone in v2",
    "conf/settings.ini": File("a=1", writable=True),
    "tool-link": Link("bin/tool"),
}
V2: dict[str, FileSpec] = {
    "bin/tool": File("#!/bin/sh\necho v2\n", executable=True),
    "share/doc.txt": "doc v2",
    "share/new/added.txt": "added in v2",
    "conf/settings.ini": File("a=1", writable=True),
}


def test_install_update_remove_reinstall(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    v1 = publish(repo_dir, "tools/main", V1)
    v2 = publish(repo_dir, "tools/main", V2)
    other = publish(repo_dir, "tools/other", {"other.txt": "o"})
    installer, repo = make_installer()

    result = installer.ensure(
        [Desired("", "tools/main", v1), Desired("sub/dir", "tools/other", other)]
    )
    assert "installed 2" in result.summary()
    assert tree(root)["bin/tool"] == "#!/bin/sh\necho v1\n"
    assert tree(root)["tool-link"] == "-> bin/tool"
    assert tree(root)["sub/dir/other.txt"] == "o"
    mode = stat.S_IMODE((root / "bin/tool").stat().st_mode)
    assert mode & 0o111 and not mode & 0o222, oct(mode)
    assert not stat.S_IMODE((root / "share/doc.txt").stat().st_mode) & 0o222
    assert not stat.S_IMODE((root / "conf/settings.ini").stat().st_mode) & 0o222

    # A second run changes nothing and fetches nothing.
    repo.fetches.clear()
    assert installer.ensure(
        [Desired("", "tools/main", v1), Desired("sub/dir", "tools/other", other)]
    ).plan.is_noop
    assert repo.fetches == []

    # Update: files changed, added, removed; the emptied directory is pruned.
    installer.ensure([Desired("", "tools/main", v2)])
    files = tree(root)
    assert files["bin/tool"] == "#!/bin/sh\necho v2\n"
    assert files["share/new/added.txt"] == "added in v2"
    assert "share/old/gone.txt" not in files and "share/old/" not in files
    assert "tool-link" not in files
    assert "sub/" not in files, "the removed package's directories are pruned"

    # Remove everything: only the state directory is left.
    installer.ensure([])
    assert tree(root) == {}
    assert list(RootState.load(root).installed()) == []

    # Reinstall from the warm cache.
    repo.fetches.clear()
    installer.ensure([Desired("", "tools/main", v2)])
    assert tree(root)["share/doc.txt"] == "doc v2"
    assert repo.fetches == []


def test_files_marked_writable_stay_writable(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    files = {"rw.txt": File("w", writable=True), "ro.txt": File("r", writable=False)}
    iid = publish(repo_dir, "tools/a", files, preserve_writable=True)
    installer, _ = make_installer()
    installer.ensure([Desired("", "tools/a", iid)])
    assert stat.S_IMODE((root / "rw.txt").stat().st_mode) & 0o200
    assert not stat.S_IMODE((root / "ro.txt").stat().st_mode) & 0o222


def test_noop_does_not_open_the_repository(repo_dir: Path, root: Path, tmp_path: Path) -> None:
    iid = publish(repo_dir, "a/b", {"x": "1"})
    opened: list[int] = []

    def factory() -> Repository:
        opened.append(1)
        return LocalRepository(repo_dir)

    installer = Installer(root, InstanceCache(tmp_path / "c"), factory)
    installer.ensure([Desired("", "a/b", iid)])
    assert opened == [1]
    installer = Installer(root, InstanceCache(tmp_path / "c"), factory)
    assert installer.ensure([Desired("", "a/b", iid)]).plan.is_noop
    assert opened == [1]


def test_paranoid_repairs(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    iid = publish(repo_dir, "tools/main", V1)
    installer, _ = make_installer()
    want = [Desired("", "tools/main", iid)]
    installer.ensure(want)
    before = tree(root)

    (root / "bin/tool").unlink()
    assert installer.plan(want, "NotParanoid").is_noop
    plan = installer.plan(want, "CheckPresence")
    assert [a.paths for a in plan.actions] == [("bin/tool",)]
    installer.ensure(want, "CheckPresence")
    assert tree(root) == before

    shutil.rmtree(root / "share")
    installer.ensure(want, "CheckPresence")
    assert tree(root) == before

    target = root / "share/doc.txt"
    os.chmod(target, 0o644)
    target.write_text("tampered")
    os.chmod(target, 0o444)
    assert installer.plan(want, "CheckPresence").is_noop, "presence does not look at content"
    plan = installer.plan(want, "CheckIntegrity")
    assert [a.paths for a in plan.actions] == [("share/doc.txt",)]
    installer.ensure(want, "CheckIntegrity")
    assert tree(root) == before
    assert installer.plan(want, "CheckIntegrity").is_noop

    # Same content, new mtime: re-hashed, not repaired.
    os.utime(root / "share/doc.txt", (1, 1))
    assert installer.plan(want, "CheckIntegrity").is_noop

    # A replaced symlink is noticed by presence checks.
    (root / "tool-link").unlink()
    (root / "tool-link").symlink_to("share")
    installer.ensure(want, "CheckPresence")
    assert tree(root) == before


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([("../evil.txt", "x")], "'..'"),
        ([("/abs/evil.txt", "x")], "absolute"),
        ([symlink_entry("link", "../../outside")], "outside the package"),
        ([symlink_entry("link", "/etc/passwd")], "absolute target"),
    ],
    ids=["zip-slip", "absolute-path", "escaping-symlink", "absolute-symlink"],
)
def test_malicious_packages_are_refused_before_writing(
    repo_dir: Path,
    root: Path,
    tmp_path: Path,
    make_installer: Callable[..., tuple[Installer, CountingRepository]],
    entries: list[RawEntry | tuple[str, str]],
    expected: str,
) -> None:
    good = publish(repo_dir, "tools/good", {"good.txt": "fine"})
    bad = plant(
        repo_dir,
        "tools/bad",
        raw_package(tmp_path / "bad.zip", [("ok.txt", "ok"), *entries], package="tools/bad"),
    )
    installer, _ = make_installer()
    with pytest.raises(InstallError, match=expected) as info:
        installer.ensure([Desired("", "tools/good", good), Desired("", "tools/bad", bad)])
    assert "tools/bad" in str(info.value)
    assert tree(root) == {}, "nothing is written, not even the good package"
    assert not (tmp_path / "evil.txt").exists()


def test_wrong_manifest_name_is_refused(
    repo_dir: Path,
    root: Path,
    tmp_path: Path,
    make_installer: Callable[..., tuple[Installer, CountingRepository]],
) -> None:
    iid = plant(
        repo_dir, "tools/a", raw_package(tmp_path / "p.zip", [("a", "1")], package="tools/other")
    )
    installer, _ = make_installer()
    with pytest.raises(InstallError, match="expected 'tools/a'"):
        installer.ensure([Desired("", "tools/a", iid)])
    assert tree(root) == {}


def test_hash_mismatch_is_refused(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    iid = publish(repo_dir, "tools/a", {"a": "1"})
    instance = repo_dir / "tools/a/@instances" / iid
    os.chmod(instance, 0o644)
    instance.write_bytes(instance.read_bytes() + b"junk")
    installer, _ = make_installer()
    with pytest.raises(InstallError) as info:
        installer.ensure([Desired("", "tools/a", iid)])
    assert info.value.error_code == "hash_mismatch_error"
    assert tree(root) == {}


def test_unmanaged_files_are_never_overwritten(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    iid = publish(repo_dir, "tools/a", {"bin/a": "pkg", "bin/b": "pkg"})
    (root / "bin").mkdir(parents=True)
    (root / "bin/a").write_text("mine")
    installer, _ = make_installer()
    with pytest.raises(InstallError, match=r"did not install:\n  bin/a \(exists"):
        installer.ensure([Desired("", "tools/a", iid)])
    assert tree(root) == {"bin/": "", "bin/a": "mine"}
    # A user file that merely sits next to installed ones is left alone on removal.
    (root / "bin/a").unlink()
    installer.ensure([Desired("", "tools/a", iid)])
    (root / "bin/mine.txt").write_text("mine")
    installer.ensure([])
    assert tree(root) == {"bin/": "", "bin/mine.txt": "mine"}


def test_two_packages_claiming_one_path_are_refused(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    a = publish(repo_dir, "tools/a", {"bin/x": "a"})
    b = publish(repo_dir, "tools/b", {"x": "b"})
    c = publish(repo_dir, "tools/c", {"bin": "c"})
    installer, _ = make_installer()
    with pytest.raises(InstallError, match="two packages claim the same path 'bin/x'"):
        installer.ensure([Desired("", "tools/a", a), Desired("bin", "tools/b", b)])
    with pytest.raises(InstallError, match="'bin' is a file of tools/c"):
        installer.ensure([Desired("", "tools/a", a), Desired("", "tools/c", c)])
    assert tree(root) == {}


@pytest.mark.parametrize("subdir", ["..", "../x", "a/../..", ".cipd", ".cipd/pkgs"])
def test_subdirs_outside_the_root_are_refused(
    repo_dir: Path,
    root: Path,
    make_installer: Callable[..., tuple[Installer, CountingRepository]],
    subdir: str,
) -> None:
    iid = publish(repo_dir, "tools/a", {"x": "1"})
    installer, _ = make_installer()
    with pytest.raises(InstallError, match="subdir"):
        installer.ensure([Desired(subdir, "tools/a", iid)])
    assert not root.exists()


def test_file_and_directory_swap_places_on_update(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    v1 = publish(repo_dir, "tools/a", {"x": "file", "d/inner.txt": "inner"})
    v2 = publish(repo_dir, "tools/a", {"x/y": "now a dir", "d": "now a file"})
    installer, _ = make_installer()
    installer.ensure([Desired("", "tools/a", v1)])
    installer.ensure([Desired("", "tools/a", v2)])
    assert tree(root) == {"x/": "", "x/y": "now a dir", "d": "now a file"}
    installer.ensure([Desired("", "tools/a", v1)])
    assert tree(root) == {"x": "file", "d/": "", "d/inner.txt": "inner"}


def test_a_file_moves_between_packages_in_one_run(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    a1 = publish(repo_dir, "tools/a", {"shared.txt": "from a", "a.txt": "a"})
    a2 = publish(repo_dir, "tools/a", {"a.txt": "a"})
    b1 = publish(repo_dir, "tools/b", {"shared.txt": "from b"})
    installer, _ = make_installer()
    installer.ensure([Desired("", "tools/a", a1)])
    installer.ensure([Desired("", "tools/a", a2), Desired("", "tools/b", b1)])
    assert tree(root) == {"a.txt": "a", "shared.txt": "from b"}
    installer.ensure([Desired("", "tools/b", b1)])
    assert tree(root) == {"shared.txt": "from b"}


def test_version_file_is_written(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    iid = publish(repo_dir, "tools/a", {"x": "1"}, version_file="meta/version.json")
    installer, _ = make_installer()
    installer.ensure([Desired("tools", "tools/a", iid)])
    import json

    assert json.loads((root / "tools/meta/version.json").read_text()) == {
        "package_name": "tools/a",
        "instance_id": iid,
    }
    assert installer.plan([Desired("tools", "tools/a", iid)], "CheckIntegrity").is_noop


def test_corrupt_cache_entries_are_fetched_again(
    repo_dir: Path,
    tmp_path: Path,
    make_installer: Callable[..., tuple[Installer, CountingRepository]],
) -> None:
    iid = publish(repo_dir, "tools/a", {"x": "1" * 1000})
    installer, _ = make_installer()
    installer.ensure([Desired("", "tools/a", iid)])
    cached = tmp_path / "cache" / iid
    os.chmod(cached, 0o644)
    cached.write_bytes(b"garbage")
    second, repo2 = make_installer(tmp_path / "root2")
    second.ensure([Desired("", "tools/a", iid)])
    assert repo2.fetches == [iid]
    assert (tmp_path / "root2/x").read_text() == "1" * 1000
    # The entry is good again and used without a fetch.
    third, repo3 = make_installer(tmp_path / "root3")
    third.ensure([Desired("", "tools/a", iid)])
    assert repo3.fetches == []


def test_interrupted_install_is_redone(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    """Simulate the state a kill between 'files moved' and 'state recorded' leaves."""
    v1 = publish(repo_dir, "tools/a", {"a": "1", "old": "o"})
    v2 = publish(repo_dir, "tools/a", {"a": "2", "new": "n"})
    installer, _ = make_installer()
    installer.ensure([Desired("", "tools/a", v1)])
    state = RootState.load(root)
    slot = next(iter(state.slots.values()))
    from caproni_tasks.packages.state import Pending

    slot.write_pending(Pending("feedfacefeedface", v2, ("a", "new")), "", "tools/a")
    os.chmod(root / "a", 0o644)
    (root / "a").write_text("half")
    (root / "new").write_text("n")
    (root / ".cipd/tmp/deadbeef").mkdir(parents=True)
    plan = installer.plan([Desired("", "tools/a", v1)])
    assert [a.kind.value for a in plan.actions] == ["reinstall"]
    installer.ensure([Desired("", "tools/a", v1)])
    assert tree(root) == {"a": "1", "old": "o"}
    assert list((root / ".cipd/tmp").iterdir()) == []
    assert installer.plan([Desired("", "tools/a", v1)], "CheckIntegrity").is_noop


def test_repair_never_deletes_user_files_in_the_way(
    repo_dir: Path, root: Path, make_installer: Callable[..., tuple[Installer, CountingRepository]]
) -> None:
    iid = publish(repo_dir, "tools/a", {"bin/a": "pkg"})
    installer, _ = make_installer()
    want = [Desired("", "tools/a", iid)]
    installer.ensure(want)
    (root / "bin/a").unlink()
    (root / "bin/a").mkdir()
    (root / "bin/a/mine.txt").write_text("mine")
    with pytest.raises(InstallError, match=r"bin/a \(a directory holding bin/a/mine.txt"):
        installer.ensure(want, "CheckPresence")
    assert (root / "bin/a/mine.txt").read_text() == "mine"
    shutil.rmtree(root / "bin/a")
    installer.ensure(want, "CheckPresence")
    assert tree(root) == {"bin/": "", "bin/a": "pkg"}


def test_parallel_extraction_of_one_package(
    repo_dir: Path,
    root: Path,
    make_installer: Callable[..., tuple[Installer, CountingRepository]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import caproni_tasks.packages.execution as installer_module

    monkeypatch.setattr(installer_module, "_BYTES_PER_WORKER", 1)
    files = {f"d{i % 3}/f{i}.txt": f"content {i}" * 50 for i in range(40)}
    iid = publish(repo_dir, "tools/a", files)
    installer, _ = make_installer()
    installer.ensure([Desired("", "tools/a", iid)])
    assert {k: v for k, v in tree(root).items() if not k.endswith("/")} == files
    assert installer.plan([Desired("", "tools/a", iid)], "CheckIntegrity").is_noop


def test_cache_verifies_on_use_and_drops_stale_temp_files(repo_dir: Path, tmp_path: Path) -> None:
    iid = publish(repo_dir, "tools/a", {"x": "1"})
    cache = InstanceCache(tmp_path / "cache")
    repo = LocalRepository(repo_dir)
    old_temp = tmp_path / "cache" / ".tmp-killed-download"
    fresh_temp = tmp_path / "cache" / ".tmp-running-download"
    (tmp_path / "cache").mkdir()
    old_temp.write_bytes(b"partial")
    fresh_temp.write_bytes(b"partial")
    os.utime(old_temp, (1, 1))
    path = cache.get(repo, "tools/a", iid)
    assert instance_id_of_file(path) == iid
    assert not old_temp.exists() and fresh_temp.exists()
    # Touched but intact: re-hashed once, still used.
    os.utime(path, (2, 2))
    assert cache.lookup(iid) == path
    # Changed content: discarded.
    os.chmod(path, 0o644)
    path.write_bytes(b"not a package")
    assert cache.lookup(iid) is None
    assert not path.exists()


class RecordingReporter:
    """Remembers every transfer's verb and total."""

    def __init__(self) -> None:
        self.transfers: list[tuple[str, int | None]] = []

    def line(self, text: str) -> None:
        pass

    def transfer(self, verb: str, subject: str, total: int | None, *, log: bool = True) -> Any:
        self.transfers.append((verb, total))
        return _NullTransfer()

    def close(self) -> None:
        pass


class _NullTransfer:
    def advance(self, nbytes: int) -> None:
        pass

    def done(self) -> None:
        pass


def test_download_bars_know_their_total_when_the_repository_does(
    repo_dir: Path, root: Path, tmp_path: Path
) -> None:
    iid = publish(repo_dir, "tools/main", V1)
    size = (repo_dir / "tools/main/@instances" / iid).stat().st_size
    want = [Desired("", "tools/main", iid)]
    reporter = RecordingReporter()
    local = LocalRepository(repo_dir)
    Installer(root, InstanceCache(tmp_path / "c1"), lambda: local, reporter=reporter).ensure(want)
    assert ("fetching", size) in reporter.transfers

    reporter = RecordingReporter()  # a repository that knows no size: a bar without total
    counting = CountingRepository(local)
    installer = Installer(tmp_path / "r2", InstanceCache(tmp_path / "c2"), lambda: counting)
    installer.reporter = reporter
    installer.ensure(want)
    assert ("fetching", None) in reporter.transfers
