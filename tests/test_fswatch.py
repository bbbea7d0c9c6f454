"""The shared watching layer and the session's watches on it: what gets a kernel watch
(only what globs can match, never ignored trees), the kernel limit (said once, the rest
polled), one call per save, runtime variables on the same layer. Every test runs on
inotify and on watchfiles' notifier (the macOS path; on Linux it uses inotify too, so
its kernel watches can be counted the same way)."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers_processes import (
    anyio_backend,
    async_wait_until,
    stays_false,
    wait_until,
    write_atomic,
)
from helpers_watch import kernel_watches

from caproni_tasks import fswatch
from caproni_tasks.fswatch import LAYER
from caproni_tasks.reloader.globs import DEFAULT_IGNORES, PathMatcher
from caproni_tasks.reloader.watching import WatchHub
from caproni_tasks.runtimevar import STRING, open_file_variable

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify and /proc"),
]
__all__ = ["anyio_backend"]


@pytest.fixture(autouse=True, params=["inotify", "notify"])
def watch_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    backend: str = request.param
    monkeypatch.setenv(fswatch.BACKEND_ENV, backend)
    # Counting starts from quiet: a notifier closed by an earlier test lets go of its
    # inotify instance on its own thread, a moment after.
    wait_until(lambda: kernel_watches() == LAYER.kernel_watches())
    return backend


def make_tree(root: Path, count: int) -> None:
    for i in range(count):
        (root / f"pkg{i}" / "lib").mkdir(parents=True)


@pytest.mark.parametrize("ignored", ["node_modules", ".venv", ".tox", "dist", "build"])
def test_default_ignores_are_documented_names(ignored: str) -> None:
    assert ignored in DEFAULT_IGNORES
    docs = (Path(__file__).parent.parent / "docs" / "reloaders.md").read_text()
    assert f"`{ignored}`" in docs


@pytest.mark.anyio
async def test_ignored_directories_get_no_watch(tmp_path: Path) -> None:
    make_tree(tmp_path / "node_modules", 100)
    make_tree(tmp_path / ".venv", 20)
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "node_modules" / "x").mkdir(parents=True)
    before = kernel_watches()
    hub = WatchHub()
    hub.add(PathMatcher(tmp_path, ["**/*.py"]), lambda paths: None)
    try:
        await hub.wait_started()
        assert hub.directories == [str(tmp_path), str(tmp_path / "src"), str(tmp_path / "src/a")]
        assert LAYER.kernel_watches() == 3
        # a notifier lets go of its kernel watches on its own thread, a moment later
        await async_wait_until(lambda: kernel_watches() == before + 3)
    finally:
        await hub.close()
    await async_wait_until(lambda: kernel_watches() == before)


@pytest.mark.anyio
async def test_only_directories_a_glob_can_match_are_watched(tmp_path: Path) -> None:
    make_tree(tmp_path / "lib", 30)
    (tmp_path / "src" / "app" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "other").mkdir(parents=True)
    (tmp_path / "build" / "out").mkdir(parents=True)
    hub = WatchHub()
    hub.add(PathMatcher(tmp_path, ["src/app/*.py", "build/**"]), lambda paths: None)
    try:
        await hub.wait_started()
        # build is ignored by default, but a glob that names it wins
        assert hub.directories == sorted(
            str(tmp_path / p) for p in ("", "build", "build/out", "src", "src/app")
        )
    finally:
        await hub.close()


@pytest.mark.anyio
async def test_a_new_directory_where_globs_match_is_watched_an_ignored_one_not(
    tmp_path: Path,
) -> None:
    seen: list[list[str]] = []
    hub = WatchHub()
    hub.add(PathMatcher(tmp_path, ["**/*.py"]), seen.append)
    try:
        await hub.wait_started()
        (tmp_path / "node_modules" / "pkg").mkdir(parents=True)
        (tmp_path / "node_modules" / "pkg" / "x.py").write_text("x")
        (tmp_path / "new" / "sub").mkdir(parents=True)
        (tmp_path / "new" / "sub" / "m.py").write_text("x")
        await async_wait_until(lambda: [str(tmp_path / "new" / "sub" / "m.py")] in seen)
        assert str(tmp_path / "new" / "sub") in hub.directories
        assert not any("node_modules" in d for d in hub.directories)
        assert not any("node_modules" in p for paths in seen for p in paths)
    finally:
        await hub.close()


@pytest.mark.anyio
@pytest.mark.parametrize("save", ["in-place", "atomic", "touch"])
async def test_one_call_per_save(tmp_path: Path, save: str) -> None:
    target = tmp_path / "app.py"
    target.write_text("0")
    seen: list[list[str]] = []
    hub = WatchHub()
    hub.add(PathMatcher(tmp_path, ["**"]), seen.append)  # the temporary file matches too
    try:
        await hub.wait_started()
        for round_ in range(1, 4):
            if save == "in-place":
                with target.open("w") as handle:  # truncate, then two writes
                    handle.write("a")
                    handle.flush()
                    handle.write(str(round_))
            elif save == "atomic":
                write_atomic(target, str(round_))
            else:
                target.touch()
            await async_wait_until(lambda n=round_: len(seen) == n)  # type: ignore[misc]
            assert await stays_false(lambda n=round_: len(seen) > n, 0.2)  # type: ignore[misc]
            assert str(target) in seen[-1]
    finally:
        await hub.close()


@pytest.mark.anyio
async def test_a_burst_of_new_files_is_one_call(tmp_path: Path) -> None:
    seen: list[list[str]] = []
    hub = WatchHub(step_ms=50)
    hub.add(PathMatcher(tmp_path, ["*.py"]), seen.append)
    try:
        await hub.wait_started()
        for i in range(30):
            (tmp_path / f"m{i}.py").write_text("x")
        await async_wait_until(lambda: len(seen) == 1)
        assert await stays_false(lambda: len(seen) > 1, 0.3)
        assert len(seen[0]) == 30
    finally:
        await hub.close()


@pytest.mark.anyio
async def test_the_kernel_limit_is_said_once_and_the_rest_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch_backend: str
) -> None:
    """Past fs.inotify.max_user_watches the kernel answers ENOSPC: one message naming
    the setting, and the directories it refused are polled (changes still seen)."""
    if watch_backend != "inotify":
        pytest.skip("inotify's limit; the notifier's refusals are tested below")
    real = fswatch.Inotify.add_watch
    allowed = {"n": 2}

    def limited(self: fswatch.Inotify, path: str) -> int:
        if allowed["n"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        allowed["n"] -= 1
        return real(self, path)

    monkeypatch.setattr(fswatch.Inotify, "add_watch", limited)
    monkeypatch.setattr(LAYER, "_warned", set())
    monkeypatch.setenv("WATCHFILES_POLL_DELAY_MS", "30")
    for i in range(5):
        (tmp_path / f"d{i}").mkdir()
    notices: list[str] = []
    seen: list[list[str]] = []
    hub = WatchHub(on_notice=notices.append)
    hub.add(PathMatcher(tmp_path, ["**/*.txt"]), seen.append)
    try:
        await hub.wait_started()
        polled = LAYER.polled_directories()
        assert len([d for d in hub.directories if d in polled]) == 4
        await async_wait_until(lambda: len(notices) == 1)
        assert "fs.inotify.max_user_watches" in notices[0]
        (tmp_path / "d4" / "late.txt").write_text("x")
        await async_wait_until(lambda: [str(tmp_path / "d4" / "late.txt")] in seen)
        (tmp_path / "more").mkdir()
        await asyncio.sleep(0.1)
        assert notices == [notices[0]]  # once, however many more are refused
    finally:
        await hub.close()
    assert not LAYER.polled_directories()


class Refusing(fswatch.Notifier):
    """A notifier that refuses directories named ``refused*`` (as watchfiles' core
    refuses one it cannot watch)."""

    def __init__(self, paths: frozenset[str]) -> None:
        for path in paths:
            if os.path.basename(path).startswith("refused"):
                raise PermissionError(errno.EACCES, "Permission denied", path)
        super().__init__(paths)


@pytest.mark.anyio
async def test_a_directory_the_notifier_refuses_is_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch_backend: str
) -> None:
    if watch_backend != "notify":
        pytest.skip("the notifier's refusals")
    monkeypatch.setattr(fswatch, "Notifier", Refusing)
    monkeypatch.setenv("WATCHFILES_POLL_DELAY_MS", "30")
    for name in ("ok", "refused1", "refused2"):
        (tmp_path / name).mkdir()
    seen: list[list[str]] = []
    hub = WatchHub()
    hub.add(PathMatcher(tmp_path, ["**/*.txt"]), seen.append)
    try:
        await hub.wait_started()
        refused = [str(tmp_path / "refused1"), str(tmp_path / "refused2")]
        assert LAYER.polled_directories() == refused
        assert LAYER.native_directories() == [str(tmp_path), str(tmp_path / "ok")]
        for name in ("ok", "refused2"):
            target = tmp_path / name / "f.txt"
            target.write_text("x")
            await async_wait_until(lambda t=target: [str(t)] in seen)  # type: ignore[misc]
    finally:
        await hub.close()
    assert not LAYER.polled_directories()
    assert not LAYER.native_directories()


def test_no_notifier_at_all_polls_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch_backend: str
) -> None:
    """watchfiles' core failing to start (or to load): every directory is polled."""
    if watch_backend != "notify":
        pytest.skip("the notifier's failure")

    class Broken(fswatch.Notifier):
        def __init__(self, paths: frozenset[str]) -> None:
            raise RuntimeError("Error creating recommended watcher")

    monkeypatch.setattr(fswatch, "Notifier", Broken)
    monkeypatch.setattr(LAYER, "_native_failed", False)
    monkeypatch.setenv("WATCHFILES_POLL_DELAY_MS", "30")
    path = tmp_path / "v.txt"
    path.write_text("one")
    var = open_file_variable(path, STRING)
    try:
        assert var.watch(timeout=15).value == "one"
        assert str(tmp_path) in LAYER.polled_directories()
        assert LAYER.native_directories() == []
        write_atomic(path, "two")
        assert var.watch(timeout=15).value == "two"
    finally:
        var.close()


def test_the_backend_is_chosen_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fswatch.BACKEND_ENV)
    assert fswatch.backend() == "inotify"  # Linux
    monkeypatch.setattr(fswatch.sys, "platform", "darwin")
    assert fswatch.backend() == "notify"
    for name in ("inotify", "notify", "poll"):
        monkeypatch.setenv(fswatch.BACKEND_ENV, name)
        assert fswatch.backend() == name
    monkeypatch.setenv(fswatch.BACKEND_ENV, "kqueue")
    assert fswatch.backend() == "notify"  # not a backend: the platform's own
    monkeypatch.setenv(fswatch.BACKEND_ENV, "notify")
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "1")
    assert fswatch.backend() == "poll"


@pytest.mark.anyio
async def test_the_notifier_follows_the_directories_and_reports_a_change_once(
    tmp_path: Path, watch_backend: str
) -> None:
    """Each new directory rebuilds the notifier over the whole set; changes made while
    the old one hands over are reported once, and the notifier in use watches exactly
    the directories being watched."""
    if watch_backend != "notify":
        pytest.skip("the notifier's rebuilds")
    (tmp_path / "a.txt").write_text("0")
    seen: list[str] = []
    hub = WatchHub()
    hub.add(PathMatcher(tmp_path, ["**/*.txt"]), seen.extend)
    try:
        await hub.wait_started()
        for i in range(5):
            (tmp_path / f"d{i}").mkdir()
            (tmp_path / "a.txt").write_text(str(i + 1))  # while the notifier is rebuilt
            await async_wait_until(lambda n=i: str(tmp_path / f"d{n}") in hub.directories)  # type: ignore[misc]
            await async_wait_until(lambda n=i: seen.count(str(tmp_path / "a.txt")) == n + 1)  # type: ignore[misc]
        assert await stays_false(lambda: seen.count(str(tmp_path / "a.txt")) > 5, 0.3)
        notifier = LAYER._notifier
        assert notifier is not None
        assert notifier.paths == frozenset(hub.directories)
        (tmp_path / "d4" / "new.txt").write_text("x")
        await async_wait_until(lambda: str(tmp_path / "d4" / "new.txt") in seen)
    finally:
        await hub.close()
    assert LAYER.native_backend() is None


@pytest.mark.parametrize("change", ["in-place", "rename", "re-create"])
def test_variables_ride_the_same_layer(tmp_path: Path, change: str) -> None:
    path = tmp_path / "v.txt"
    path.write_text("one")
    var = open_file_variable(path, STRING)
    try:
        assert var.watch(timeout=15).value == "one"
        assert str(tmp_path) in LAYER.native_directories()
        if change == "in-place":
            with path.open("w") as handle:
                handle.write("t")
                handle.flush()
                handle.write("wo")
        elif change == "rename":
            tmp = tmp_path / ".v.txt.tmp"
            tmp.write_text("two")
            os.replace(tmp, path)
        else:
            path.unlink()
            with pytest.raises(Exception) as info:
                var.watch(timeout=15)
            assert "does not exist" in str(info.value)
            path.write_text("two")
        # the in-place write is not seen half done: its close is waited for
        assert var.watch(timeout=15).value == "two"
    finally:
        var.close()


def test_runtime_variable_and_reloader_share_one_kernel_watch(tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_text("1")
    before = kernel_watches()

    async def main() -> Any:
        hub = WatchHub()
        hub.add(PathMatcher(tmp_path, ["*.txt"]), lambda paths: None)
        await hub.wait_started()
        var = open_file_variable(path, STRING)
        try:
            await async_wait_until(lambda: kernel_watches() - before == 1)
            return LAYER.kernel_watches()
        finally:
            var.close()
            await hub.close()

    assert asyncio.run(main()) == 1
