"""Restart on file changes: one restart per burst, in-place and atomic saves, ignores."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers_processes import (
    anyio_backend,
    async_wait_until,
    spec,
    stays_false,
    supervising,
    write_atomic,
)

from caproni_tasks.config.model import ProcessRef
from caproni_tasks.fswatch import BACKEND_ENV
from caproni_tasks.reloader.globs import PathMatcher, glob_regex, watch_roots

pytestmark = [pytest.mark.timeout(60)]
__all__ = ["anyio_backend"]


@pytest.fixture(autouse=True, params=["inotify", "notify"])
def watch_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on inotify and on watchfiles' notifier (the macOS path)."""
    backend: str = request.param
    monkeypatch.setenv(BACKEND_ENV, backend)
    return backend


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "pkg/deep/a.py", True),
        ("src/**/*.py", "src/a.py", True),
        ("src/**/*.py", "src/b/c/a.py", True),
        ("src/**/*.py", "lib/a.py", False),
        ("src/*.py", "src/b/a.py", False),
        ("src", "src/any/file", True),
        ("src/", "src/file", True),
        ("build/**", "build/x/y", True),
        ("build/**", "buildx", False),
        ("[!a]b.txt", "cb.txt", True),
        ("[!a]b.txt", "ab.txt", False),
        ("?.md", "a.md", True),
        ("?.md", "ab.md", False),
        ("./src/*.py", "src/a.py", True),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).fullmatch(path)) is matches


@pytest.mark.anyio
async def test_a_watched_tree_deleted_and_created_again_is_still_watched(tmp_path: Path) -> None:
    """`git checkout` of a branch without the tree, then back: the watcher moves to the
    nearest existing directory instead of going silent with its deleted root."""
    (tmp_path / "src" / "a").mkdir(parents=True)
    specs = [spec("app", _server(tmp_path), tmp_path, watch=("src/a/**/*.py",))]
    async with supervising("r", specs) as (sup, out, _):
        await async_wait_until(lambda: out.exact("app", "RUN") == 1)
        await sup.wait_watching()
        src = tmp_path / "src"
        assert sup.watch_hub.directories == [str(tmp_path), str(src), str(src / "a")]
        shutil.rmtree(src)
        await async_wait_until(lambda: sup.watch_hub.directories == [str(tmp_path)])
        await sup.wait_watching()
        (tmp_path / "src" / "a" / "deep").mkdir(parents=True)
        (tmp_path / "src" / "a" / "deep" / "mod.py").write_text("x")
        await async_wait_until(lambda: out.exact("app", "RUN") == 2)
        assert await stays_false(lambda: out.exact("app", "RUN") > 2, 0.5)


def test_watch_roots_are_directories_nearest_existing_and_folded(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "main.py").write_text("")
    roots = watch_roots(tmp_path, ["src/pkg/**/*.py", "src/main.py", "later/**"])
    # src/main.py is a file: its directory is watched; "later" does not exist yet.
    assert roots == [tmp_path]
    assert watch_roots(tmp_path, ["src/pkg/*.py"]) == [tmp_path / "src" / "pkg"]
    assert watch_roots(tmp_path, ["src/main.py"]) == [tmp_path / "src"]
    assert watch_roots(tmp_path, ["*.py"]) == [tmp_path]


def test_path_matcher_applies_ignores_and_default_ignores(tmp_path: Path) -> None:
    matcher = PathMatcher(tmp_path, ["src/**"], ["src/generated/**"])
    assert matcher.matches(str(tmp_path / "src" / "a.py"))
    assert not matcher.matches(str(tmp_path / "src" / "generated" / "x.py"))
    assert not matcher.matches(str(tmp_path / "src" / ".a.py.swp"))
    assert not matcher.matches(str(tmp_path / "src" / "__pycache__" / "a.cpython-311.pyc"))
    assert not matcher.matches(str(tmp_path / "other" / "a.py"))
    assert not matcher.matches("/elsewhere/src/a.py")


def _server(tmp_path: Path) -> str:
    # Prints one line per start, then idles until stopped.
    return "echo RUN; exec sleep 300"


@pytest.mark.anyio
@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "atomic"])
async def test_file_change_restarts_exactly_once(tmp_path: Path, atomic: bool) -> None:
    src = tmp_path / "src"
    src.mkdir()
    target = src / "app.py"
    target.write_text("v1\n")
    specs = [spec("app", _server(tmp_path), tmp_path, watch=("src/**/*.py",), stop_timeout=5)]
    async with supervising("r", specs) as (sup, out, _):
        process = sup.processes[ProcessRef("r", "app")]
        await async_wait_until(lambda: out.exact("app", "RUN") == 1 and process.pid)
        await sup.wait_watching()
        first_pid = process.pid
        if atomic:
            write_atomic(target, "v2\n")
        else:
            with target.open("w") as handle:  # truncate, then two writes: one burst
                handle.write("v2")
                handle.flush()
                handle.write("\n")
        await async_wait_until(lambda: out.exact("app", "RUN") == 2)
        assert process.pid != first_pid
        # A quiet period bounded by a condition: no second restart follows.
        assert await stays_false(lambda: out.exact("app", "RUN") > 2, 1.0)
        assert process.restarts == 1
        assert out.count("app", "app.py changed: restarting") == 1


@pytest.mark.anyio
async def test_ignored_and_unwatched_changes_do_not_restart(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "docs").mkdir()
    specs = [
        spec("app", _server(tmp_path), tmp_path, watch=("src/**",), ignore=("src/*.log",)),
    ]
    async with supervising("r", specs) as (sup, out, _):
        await async_wait_until(lambda: out.exact("app", "RUN") == 1)
        await sup.wait_watching()
        (tmp_path / "src" / "debug.log").write_text("noise")
        (tmp_path / "src" / ".app.py.swp").write_text("vim")
        (tmp_path / "docs" / "readme.md").write_text("docs")
        assert await stays_false(lambda: out.exact("app", "RUN") > 1, 0.7)
        # A directory created after start is picked up (the root is watched recursively).
        (tmp_path / "src" / "new").mkdir()
        (tmp_path / "src" / "new" / "mod.py").write_text("x")
        await async_wait_until(lambda: out.exact("app", "RUN") == 2)


@pytest.mark.anyio
async def test_change_restarts_a_failed_process(tmp_path: Path) -> None:
    """A crashed-out process gets another chance when its code changes."""
    (tmp_path / "src").mkdir()
    flag = tmp_path / "src" / "fixed"
    command = "test -f src/fixed || { echo broken; exit 1; }; echo healthy; exec sleep 300"
    specs = [spec("app", command, tmp_path, watch=("src/**",), max_restarts=1)]
    async with supervising("r", specs) as (sup, out, _):
        process = sup.processes[ProcessRef("r", "app")]
        await async_wait_until(lambda: process.state == "failed")
        await sup.wait_watching()
        flag.write_text("")
        await async_wait_until(lambda: out.exact("app", "healthy") == 1)
        assert process.state == "ready"


@pytest.mark.anyio
async def test_late_directory_bursts_and_editor_saves_restart_once_each(tmp_path: Path) -> None:
    """The watched tree does not exist at start; then: a nested file in it, a burst of 50
    writes, and a vim-style save (probe file, backup rename, new file, backup removed)
    each restart exactly once."""
    specs = [spec("app", _server(tmp_path), tmp_path, watch=("lib/**/*.py",), stop_timeout=5)]
    async with supervising("r", specs) as (sup, out, _):
        process = sup.processes[ProcessRef("r", "app")]
        await async_wait_until(lambda: out.exact("app", "RUN") == 1)
        await sup.wait_watching()

        async def restarted_once(expected: int) -> None:
            await async_wait_until(lambda: out.exact("app", "RUN") == expected)
            assert await stays_false(lambda: out.exact("app", "RUN") > expected, 0.5)
            assert process.restarts == expected - 1

        deep = tmp_path / "lib" / "pkg" / "sub"
        deep.mkdir(parents=True)
        (deep / "mod.py").write_text("v1\n")
        await restarted_once(2)
        assert out.count("app", "lib/pkg/sub/mod.py") == 1

        await sup.wait_watching()
        target = deep / "mod.py"
        with target.open("a") as handle:
            for i in range(50):
                handle.write(f"line {i}\n")
                handle.flush()
        await restarted_once(3)

        await sup.wait_watching()
        (deep / "4913").write_text("")
        (deep / "4913").unlink()
        (deep / ".mod.py.swp").write_text("swap")
        os.rename(target, deep / "mod.py~")
        target.write_text("v3\n")
        (deep / "mod.py~").unlink()
        await restarted_once(4)


@pytest.mark.anyio
async def test_files_in_a_new_directory_count_even_without_their_own_events(
    tmp_path: Path,
) -> None:
    """`mkdir -p a/b && echo > a/b/f.py` can finish before the kernel watch on the new
    directory exists, leaving only the directory's own event: its contents are looked at."""
    from caproni_tasks.fswatch import Event, Flag
    from caproni_tasks.reloader.watching import WatchHub

    hub = WatchHub()
    seen: list[list[str]] = []
    new = tmp_path / "lib" / "pkg" / "sub"
    new.mkdir(parents=True)  # before the hub watches: no event but the one below
    (new / "mod.py").write_text("x")
    (new / "notes.txt").write_text("x")
    (tmp_path / "lib" / "skip").mkdir()
    (tmp_path / "lib" / "skip" / "gen.py").write_text("x")
    lib = str(tmp_path / "lib")
    hub.add(PathMatcher(tmp_path, ["lib/**/*.py"], ["lib/skip/**"]), seen.append)
    try:
        await hub.wait_started()
        # Only the new directory's own event, as when its files came before its watch:
        hub._on_events([Event(lib, Flag.CREATED | Flag.IS_DIR)])
        await async_wait_until(lambda: bool(seen))
        assert str(new) in hub.directories
        assert str(tmp_path / "lib" / "skip") not in hub.directories  # ignored: no watch
        assert seen == [[str(new / "mod.py")]]
    finally:
        await hub.close()
