"""Roots the cipd client deployed: recognised, converged, never refused or corrupted.

The cipd client keeps ``.cipd/pkgs/<n>/`` per package with ``description.json``, a
``_current`` symlink naming the instance, and ``<instance id>/`` holding the extracted
files (symlink mode: the root holds links into ``_current``) or only the deployed
manifest (copy mode: the root holds the files). These tests lay a root out that way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers_packages import publish
from test_install_core import tree

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.cache import InstanceCache
from caproni_tasks.packages.installer import Desired, Installer

V1 = {"bin/tool": "tool v1", "share/doc.txt": "doc v1"}
V2 = {"bin/tool": "tool v2", "share/new.txt": "new in v2"}


def deploy_like_cipd(
    root: Path, index: int, package: str, iid: str, files: dict[str, str], mode: str, subdir=""
) -> None:
    slot = root / ".cipd/pkgs" / str(index)
    instance = slot / iid
    (instance / ".cipdpkg").mkdir(parents=True)
    description = {"package_name": package, **({"subdir": subdir} if subdir else {})}
    (slot / "description.json").write_text(json.dumps(description))
    entries = []
    for name, content in files.items():
        entries.append({"name": name, "size": len(content)})
        place = root / subdir / name
        place.parent.mkdir(parents=True, exist_ok=True)
        if mode == "symlink":
            (instance / name).parent.mkdir(parents=True, exist_ok=True)
            (instance / name).write_text(content)
            depth = (f"{subdir}/{name}" if subdir else name).count("/")
            os.symlink("../" * depth + f".cipd/pkgs/{index}/_current/{name}", place)
        else:
            place.write_text(content)
    manifest = {
        "format_version": "1.1",
        "package_name": package,
        "files": entries,
        "actual_install_mode": mode,
    }
    (instance / ".cipdpkg/manifest.json").write_text(json.dumps(manifest))
    os.symlink(iid, slot / "_current")


@pytest.fixture
def installer(repo_dir: Path, root: Path, tmp_path: Path) -> Installer:
    repo = LocalRepository(repo_dir)
    return Installer(root, InstanceCache(tmp_path / "cache"), lambda: repo)


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_the_same_pin_is_recognised_as_installed(
    mode: str, repo_dir: Path, root: Path, installer: Installer
) -> None:
    v1 = publish(repo_dir, "t/tool", V1)
    deploy_like_cipd(root, 0, "t/tool", v1, V1, mode)
    before = tree(root)
    for paranoid in ("NotParanoid", "CheckPresence"):
        result = installer.ensure([Desired("", "t/tool", v1)], paranoid)
        assert result.plan.is_noop, result.plan.actions
    assert tree(root) == before
    assert (root / ".cipd/pkgs/0/_current").is_symlink(), "the cipd client's record is kept"


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_an_update_takes_the_package_over(
    mode: str, repo_dir: Path, root: Path, installer: Installer
) -> None:
    v1 = publish(repo_dir, "t/tool", V1)
    v2 = publish(repo_dir, "t/tool", V2)
    deploy_like_cipd(root, 0, "t/tool", v1, V1, mode)
    (root / "share/mine.txt").write_text("the user's own")

    installer.ensure([Desired("", "t/tool", v2)])
    assert tree(root) == {
        "bin/": "",
        "bin/tool": "tool v2",
        "share/": "",
        "share/new.txt": "new in v2",
        "share/mine.txt": "the user's own",
    }
    assert not (root / ".cipd/pkgs/0").exists()
    assert not (root / "bin/tool").is_symlink()
    assert installer.ensure([Desired("", "t/tool", v2)], "CheckIntegrity").plan.is_noop


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_a_package_no_longer_listed_is_removed(
    mode: str, repo_dir: Path, root: Path, installer: Installer
) -> None:
    v1 = publish(repo_dir, "t/tool", V1)
    keep = publish(repo_dir, "t/keep", {"keep.txt": "k"})
    deploy_like_cipd(root, 0, "t/tool", v1, V1, mode)
    deploy_like_cipd(root, 1, "t/keep", keep, {"keep.txt": "k"}, mode, subdir="sub")

    installer.ensure([Desired("sub", "t/keep", keep)])
    expected = {"sub/": "", "sub/keep.txt": "-> ../.cipd/pkgs/1/_current/keep.txt"}
    if mode == "copy":
        expected["sub/keep.txt"] = "k"
    assert tree(root) == expected
    assert sorted(os.listdir(root / ".cipd/pkgs")) == ["1"]


def test_a_broken_deployment_is_reinstalled_in_our_layout(
    repo_dir: Path, root: Path, installer: Installer
) -> None:
    v1 = publish(repo_dir, "t/tool", V1)
    deploy_like_cipd(root, 0, "t/tool", v1, V1, "symlink")
    (root / "bin/tool").unlink()
    assert installer.ensure([Desired("", "t/tool", v1)]).plan.is_noop
    result = installer.ensure([Desired("", "t/tool", v1)], "CheckPresence")
    assert result.summary().startswith("reinstalled 1")
    assert tree(root) == {
        "bin/": "",
        "bin/tool": "tool v1",
        "share/": "",
        "share/doc.txt": "doc v1",
    }
    assert not (root / ".cipd/pkgs/0").exists()
