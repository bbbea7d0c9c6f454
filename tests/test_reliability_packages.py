"""Issue 11, the package half: nothing lost through symlinks, kills, bombs or corrupt files.

Each test reproduces a failure found by probing and asserts the fixed behaviour.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers_packages import File, FileSpec, Link, manifest_json, publish, raw_package
from helpers_session import make_project
from test_ensure_task import invoke, wait_for
from test_install_core import plant, tree

import caproni_tasks
from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.cache import InstanceCache
from caproni_tasks.packages.format import PackageFormatError, PackageLimits, PackageReader
from caproni_tasks.packages.installer import Desired, Installer, InstallError
from caproni_tasks.packages.state import RootState

PAUSING_INVOKE = Path(__file__).with_name("pausing_invoke.py")


@pytest.fixture
def installer(repo_dir: Path, root: Path, tmp_path: Path) -> Installer:
    repo = LocalRepository(repo_dir)
    return Installer(root, InstanceCache(tmp_path / "cache"), lambda: repo)


def _want(*pairs: tuple[str, str]) -> list[Desired]:
    return [Desired("", package, iid) for package, iid in pairs]


# --- 1. deletion never follows a symlink that replaced a directory ----------------------


def test_update_turning_a_directory_into_a_link_deletes_nothing_through_it(
    repo_dir: Path, root: Path, installer: Installer
) -> None:
    y = publish(repo_dir, "t/y", {"bin/tool": File("y's tool", executable=True)})
    x1 = publish(repo_dir, "t/x", {"d/tool": "x v1"})
    x2 = publish(repo_dir, "t/x", {"d": Link("bin")})
    installer.ensure(_want(("t/y", y), ("t/x", x1)))
    assert tree(root) == {"bin/": "", "bin/tool": "y's tool", "d/": "", "d/tool": "x v1"}

    installer.ensure(_want(("t/y", y), ("t/x", x2)))
    assert tree(root) == {"bin/": "", "bin/tool": "y's tool", "d": "-> bin"}

    # ... and back: the link is replaced by the directory again.
    installer.ensure(_want(("t/y", y), ("t/x", x1)))
    assert tree(root) == {"bin/": "", "bin/tool": "y's tool", "d/": "", "d/tool": "x v1"}
    assert installer.ensure(_want(("t/y", y), ("t/x", x1)), "CheckIntegrity").plan.is_noop


def test_a_users_own_files_behind_a_new_link_survive(
    repo_dir: Path, root: Path, installer: Installer
) -> None:
    x1 = publish(repo_dir, "t/x", {"d/notes.txt": "x's notes"})
    x2 = publish(repo_dir, "t/x", {"d": Link("mine")})
    installer.ensure(_want(("t/x", x1)))
    (root / "mine").mkdir()
    (root / "mine/notes.txt").write_text("the user's own notes")

    installer.ensure(_want(("t/x", x2)))
    assert (root / "mine/notes.txt").read_text() == "the user's own notes"
    assert os.readlink(root / "d") == "mine"
    installer.ensure([])  # removing the package removes its link, not the user's files
    assert tree(root) == {"mine/": "", "mine/notes.txt": "the user's own notes"}


def test_removing_a_package_whose_parent_became_a_link_of_another_package(
    repo_dir: Path, root: Path, installer: Installer
) -> None:
    a = publish(repo_dir, "t/a", {"d/tool": "a's tool"})
    b = publish(repo_dir, "t/b", {"bin/tool": "b's tool"})
    c = publish(repo_dir, "t/c", {"d": Link("bin")})
    installer.ensure(_want(("t/a", a), ("t/b", b)))
    installer.ensure(_want(("t/b", b), ("t/c", c)))  # a goes, c puts a link where d/ was
    assert tree(root) == {"bin/": "", "bin/tool": "b's tool", "d": "-> bin"}


# --- 2. an interrupted removal is finished or redone ------------------------------------


FILES: dict[str, FileSpec] = {f"share/f{i:02}.txt": f"file {i}" for i in range(20)}


@pytest.mark.parametrize("point", ["remove", "cleanup"])
def test_killed_while_removing_then_listed_again_converges(
    point: str, tmp_path: Path, repo_dir: Path, subprocess_env: dict[str, str]
) -> None:
    project = make_project(tmp_path / "project")
    publish(repo_dir, "t/keep", {"k.txt": "k"}, refs=["latest"])
    publish(repo_dir, "t/gone", FILES, refs=["latest"])
    env = {**subprocess_env, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    both = f"$ServiceURL {repo_dir.as_uri()}\nt/keep latest\nt/gone latest\n"
    (project / "tools.ensure").write_text(both)
    assert invoke(project, env, "ensure").returncode == 0

    (project / "tools.ensure").write_text(f"$ServiceURL {repo_dir.as_uri()}\nt/keep latest\n")
    marker = tmp_path / "paused"
    with (tmp_path / "killed.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(PAUSING_INVOKE), point, str(marker), "ensure"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, what=f"checkpoint {point}")
        assert marker.exists(), (tmp_path / "killed.log").read_text()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    (project / "tools.ensure").write_text(both)  # the package is listed again
    done = invoke(project, env, "ensure")
    assert done.returncode == 0, done.stderr
    assert "reinstalled 1" in done.stdout
    expected = {"k.txt": "k", "share/": "", **{k: str(v) for k, v in FILES.items()}}
    assert tree(project / ".tools") == expected
    again = invoke(project, env, "ensure", "--paranoid", "CheckIntegrity")
    assert "everything is up to date (2 package(s))" in again.stdout, again.stdout


def test_interrupted_removal_left_unwanted_is_finished(
    repo_dir: Path, root: Path, installer: Installer
) -> None:
    keep = publish(repo_dir, "t/keep", {"k.txt": "k"})
    gone = publish(repo_dir, "t/gone", FILES)
    installer.ensure(_want(("t/keep", keep), ("t/gone", gone)))

    class Killed(BaseException):
        pass

    def kill_at_cleanup(point: str) -> None:
        if point == "cleanup":
            raise Killed

    repo = LocalRepository(repo_dir)
    dying = Installer(root, installer.cache, lambda: repo, checkpoint=kill_at_cleanup)
    with pytest.raises(Killed):
        dying.ensure(_want(("t/keep", keep)))
    slots = RootState.load(root).slots.values()
    assert any(s.record is None and s.pending is not None for s in slots), "journaled"
    assert installer.plan(_want(("t/keep", keep))).count(installer_kind("REMOVE")) == 1
    installer.ensure(_want(("t/keep", keep)))
    assert tree(root) == {"k.txt": "k"}


def installer_kind(name: str) -> object:
    from caproni_tasks.packages.planning import ActionKind

    return ActionKind[name]


# --- 4. decompression bombs ---------------------------------------------------------------


def _declare_size(path: Path, name: str, declared: int) -> None:
    """Rewrite the uncompressed size an entry declares (local and central headers)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    local = info.header_offset
    struct.pack_into("<I", data, local + 22, declared)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46 : central + 46 + name_len]) == name.encode():
            struct.pack_into("<I", data, central + 24, declared)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def test_a_bomb_is_refused_before_anything_is_written(
    tmp_path: Path, repo_dir: Path, root: Path, installer: Installer
) -> None:
    bomb = raw_package(tmp_path / "bomb.zip", [("big", b"\0" * 4096)], package="t/bomb")
    _declare_size(bomb, "big", 3 << 30)  # 3 GiB from a few hundred bytes
    iid = plant(repo_dir, "t/bomb", bomb)
    with pytest.raises(InstallError) as caught:
        installer.ensure(_want(("t/bomb", iid)))
    assert "decompression bomb" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert tree(root) == {}
    assert list((root / ".cipd/tmp").glob("*")) == []


def test_limits_are_configurable_and_count_the_whole_package(tmp_path: Path) -> None:
    package = tmp_path / "zeros.zip"
    with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"f{i}", b"\0" * (1 << 20))
        archive.writestr(".cipdpkg/manifest.json", manifest_json("t/zeros"))
    with PackageReader(package):  # the defaults let 3 MiB of zeros through
        pass
    strict = PackageLimits(max_ratio=10, ratio_floor=1 << 20)
    with pytest.raises(PackageFormatError, match=r"package would unpack .* to 3\.0 MiB \(ratio"):
        PackageReader(package, limits=strict)
    small = PackageLimits(max_total_size=2 << 20)
    with pytest.raises(PackageFormatError, match=r"more than the limit of 2\.0 MiB"):
        PackageReader(package, limits=small)


def test_more_data_than_declared_stops_extraction(
    tmp_path: Path, repo_dir: Path, root: Path, installer: Installer
) -> None:
    liar = raw_package(tmp_path / "liar.zip", [("f", b"x" * 100_000)], package="t/liar")
    _declare_size(liar, "f", 10)
    iid = plant(repo_dir, "t/liar", liar)
    with pytest.raises(InstallError, match="corrupt data"):
        installer.ensure(_want(("t/liar", iid)))
    assert tree(root) == {}


def test_bomb_limits_from_invoke_settings(
    tmp_path: Path, repo_dir: Path, subprocess_env: dict[str, str]
) -> None:
    project = make_project(tmp_path / "project")
    (project / "invoke.yaml").write_text("caproni:\n  max_package_size: 1000\n")
    publish(repo_dir, "t/p", {"a.txt": "x" * 5000}, refs=["latest"])
    (project / "tools.ensure").write_text(f"$ServiceURL {repo_dir.as_uri()}\nt/p latest\n")
    env = {**subprocess_env, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    done = invoke(project, env, "ensure")
    assert done.returncode == 1
    assert "more than the limit of 1000 B (caproni.max_package_size)" in done.stderr
    (project / "invoke.yaml").write_text("caproni:\n  max_package_size: lots\n")
    done = invoke(project, env, "ensure")
    assert done.returncode == 2 and "must be a number" in done.stderr
    assert "Traceback" not in done.stderr


# --- 5. manifests, indexes and state records of the wrong shape -------------------------

DEEP = "[" * 50_000 + "]" * 50_000


@pytest.mark.parametrize("manifest", [DEEP, "[]", "null", '"text"', "\udcff", '{"a": '])
def test_a_manifest_of_any_shape_is_one_line(
    manifest: str, tmp_path: Path, repo_dir: Path, installer: Installer
) -> None:
    raw = manifest.encode("utf-8", "surrogateescape")
    package = raw_package(tmp_path / "m.zip", [("a", "x")], package=None)
    with zipfile.ZipFile(package, "a") as archive:
        archive.writestr(".cipdpkg/manifest.json", raw)
    iid = plant(repo_dir, "t/m", package)
    with pytest.raises(InstallError) as caught:
        installer.ensure(_want(("t/m", iid)))
    assert "manifest.json" in str(caught.value) and "\n" not in str(caught.value)


def test_pkg_register_of_a_deep_manifest_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from invoke import Program

    package = raw_package(tmp_path / "deep.zip", [("a", "x")], manifest=DEEP)
    program = Program(namespace=caproni_tasks.namespace(), version="test")
    with pytest.raises(SystemExit) as stop:
        program.run(["invoke", "pkg.register", str(package), "--repo", str(tmp_path / "r")])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "nested deeper than" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "content",
    [DEEP, "[]", "null", '{"format": 1, "subdir": 5}', '{"format": 1}', "\x00\x01"],
)
def test_a_state_record_of_any_shape_is_one_line(
    content: str, repo_dir: Path, root: Path, installer: Installer
) -> None:
    iid = publish(repo_dir, "t/p", {"a.txt": "a"})
    installer.ensure(_want(("t/p", iid)))
    (slot,) = (root / ".cipd/pkgs").iterdir()
    (slot / "state.json").write_text(content)
    with pytest.raises(InstallError) as caught:
        installer.ensure(_want(("t/p", iid)))
    assert "state.json" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("content", [DEEP, "[]", '{"format": 1, "files": [5]}'])
def test_a_files_manifest_of_any_shape_is_one_line(
    content: str, repo_dir: Path, root: Path, installer: Installer
) -> None:
    iid = publish(repo_dir, "t/p", {"a.txt": "a"})
    installer.ensure(_want(("t/p", iid)))
    (slot,) = (root / ".cipd/pkgs").iterdir()
    (manifest,) = slot.glob("files-*.json")
    manifest.write_text(content)
    with pytest.raises(InstallError) as caught:
        installer.ensure(_want(("t/p", iid)), "CheckPresence")
    assert manifest.name in str(caught.value) and "\n" not in str(caught.value)


def test_a_deep_package_index_is_one_line(repo_dir: Path) -> None:
    from caproni_tasks.packages.repository import RepositoryError

    publish(repo_dir, "t/p", {"a.txt": "a"}, refs=["latest"])
    (repo_dir / "t/p/@index.json").write_text(json.dumps({"format": 1}) + DEEP)
    (repo_dir / "t/p/@index.json").write_text(DEEP)
    with pytest.raises(RepositoryError, match="nested deeper than"):
        LocalRepository(repo_dir).resolve_version("t/p", "latest")


# --- 10. the command line ---------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, repo_dir: Path) -> Path:
    project = make_project(tmp_path / "project")
    publish(repo_dir, "t/p", {"a.txt": "a"}, refs=["latest"])
    (project / "tools.ensure").write_text(f"$ServiceURL {repo_dir.as_uri()}\nt/p latest\n")
    return project


def _run(monkeypatch: pytest.MonkeyPatch, project: Path, *argv: str) -> int:
    from invoke import Program

    monkeypatch.chdir(project)
    try:
        Program(namespace=caproni_tasks.namespace(), version="test").run(["invoke", *argv])
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


@pytest.mark.parametrize(
    ("task", "flag"),
    [
        ("ensure", "--ensure-file"),
        ("ensure.resolve", "--ensure-file"),
        ("ensure.verify", "--ensure-file"),
        ("ensure.fmt", "--file"),
        ("lint", "--file"),
    ],
)
def test_an_ensure_file_that_is_a_fifo_is_refused(
    task: str,
    flag: str,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fifo = project / "pipe.ensure"
    os.mkfifo(fifo)
    code = _run(monkeypatch, project, task, flag, str(fifo))
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert "FIFO" in out + err and "Traceback" not in out + err, (out, err)


def test_json_output_into_a_missing_directory_is_refused_up_front(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = project / "no/such/dir/out.json"
    code = _run(monkeypatch, project, "ensure", "--json", str(target))
    assert code == 2
    assert f"directory {project / 'no'} does not exist" in capsys.readouterr().err
    assert not (project / "no").exists()
    assert not (project / ".tools").exists(), "nothing was installed before the refusal"


def test_pkg_list_of_a_missing_repository_is_an_error(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(monkeypatch, project, "pkg.list", "--repo", str(project / "nowhere"))
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


def test_pkg_create_out_into_a_missing_directory_creates_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = project / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    out = project / "no/such/dir/p.cipd"
    repo = project / "published"
    code = _run(
        monkeypatch, project, "pkg.create", "--in", str(src), "--name", "t/c",
        "--out", str(out), "--repo", str(repo),
    )  # fmt: skip
    assert code == 1
    assert f"directory {out.parent} does not exist" in capsys.readouterr().err
    assert not (project / "no").exists()


def test_a_path_with_a_nul_is_an_os_error_not_a_crash(tmp_path: Path) -> None:
    from caproni_tasks.userfiles import read_regular_file

    with pytest.raises(OSError, match="NUL"):
        read_regular_file(tmp_path / "a\x00b")


def test_durable_data_installs_the_same(repo_dir: Path, root: Path, tmp_path: Path) -> None:
    iid = publish(repo_dir, "t/d", {"bin/d": File("d", executable=True), "share/x": "x"})
    repo = LocalRepository(repo_dir)
    durable = Installer(root, InstanceCache(tmp_path / "c"), lambda: repo, durable_data=True)
    assert durable.ensure([Desired("", "t/d", iid)]).summary().startswith("installed 1")
    assert tree(root) == {"bin/": "", "bin/d": "d", "share/": "", "share/x": "x"}
    assert durable.ensure([Desired("", "t/d", iid)], "CheckIntegrity").plan.is_noop
