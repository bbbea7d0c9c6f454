"""The file driver against real files and the real watcher: every situation of the
reference's file-driver table, shared watchers, async use."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers_watch import kernel_watches

from caproni_tasks.fswatch import BACKEND_ENV, LAYER
from caproni_tasks.runtimevar import (
    BYTES,
    ERR_CLOSED,
    JSONMAP,
    STRING,
    ErrorCode,
    Snapshot,
    Variable,
    VariableError,
    filevar,
    json_decoder,
    open_file_variable,
    open_variable,
)
from caproni_tasks.runtimevar.watcher import REGISTRY

LONG = 15.0  # the CI machine is slow and shared: generous, never reached when healthy


@pytest.fixture(autouse=True, params=["inotify", "notify"])
def watch_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on inotify and on watchfiles' notifier (the macOS path)."""
    backend: str = request.param
    monkeypatch.setenv(BACKEND_ENV, backend)
    return backend


class ReadSpy:
    """Records every read the file driver makes, so tests can wait until a change was
    *processed* before asserting that it produced no new state."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cond = threading.Condition()
        self.reads: list[bytes | OSError] = []
        real = filevar.read_bytes

        def spy(path: str) -> bytes:
            try:
                data = real(path)
            except OSError as exc:
                self._record(exc)
                raise
            self._record(data)
            return data

        monkeypatch.setattr(filevar, "read_bytes", spy)

    def _record(self, item: bytes | OSError) -> None:
        with self.cond:
            self.reads.append(item)
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.reads)

    def wait_read(self, since: int, predicate: Callable[[bytes | OSError], bool]) -> None:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: any(predicate(r) for r in self.reads[since:]), timeout=LONG
            )
        assert ok, "the driver never read the expected content"


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> ReadSpy:
    return ReadSpy(monkeypatch)


@pytest.fixture
def closing() -> Iterator[list[Variable[Any]]]:
    """Variables appended here are closed after the test."""
    opened: list[Variable[Any]] = []
    yield opened
    for var in opened:
        if not var.closed:
            var.close()


def write_in_place(path: Path, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    with open(path, "wb") as f:
        f.write(raw)


def rewrite_without_truncating(path: Path, data: bytes) -> None:
    """Write *data* over the start of the file: never an empty file in between."""
    with open(path, "r+b") as f:
        f.write(data)


def write_atomic(path: Path, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def watch_until(var: Variable[Any], predicate: Callable[[Snapshot[Any]], bool]) -> Snapshot[Any]:
    """Watch until a snapshot satisfies *predicate* (errors in between are skipped)."""
    deadline = time.monotonic() + LONG
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "expected value never observed"
        try:
            snap = var.watch(timeout=remaining)
        except VariableError as exc:
            if exc.code is ErrorCode.DEADLINE_EXCEEDED:
                raise
            continue
        if predicate(snap):
            return snap


def watch_value(var: Variable[Any], expected: Any) -> Snapshot[Any]:
    return watch_until(var, lambda s: bool(s.value == expected))


def watch_error(var: Variable[Any]) -> VariableError:
    with pytest.raises(VariableError) as info:
        var.watch(timeout=LONG)
    assert info.value.code is not ErrorCode.DEADLINE_EXCEEDED
    return info.value


def no_new_state(var: Variable[Any]) -> None:
    with pytest.raises(VariableError) as info:
        var.watch(timeout=0)
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED


def test_exists_at_open_first_watch_returns_value(tmp_path: Path, closing: list[Any]) -> None:
    path = tmp_path / "v.txt"
    path.write_text("hello")
    var = open_file_variable(path, STRING)
    closing.append(var)
    assert var.latest(timeout=0).value == "hello"  # the first read happens at open
    snap = var.watch(timeout=LONG)
    assert snap.value == "hello" and snap.update_time.tzinfo is not None


def test_missing_at_open_then_created(tmp_path: Path, closing: list[Any]) -> None:
    path = tmp_path / "late.json"
    var = open_variable(f"file://{path}?decoder=jsonmap")
    closing.append(var)
    err = watch_error(var)
    assert err.code is ErrorCode.NOT_FOUND
    assert isinstance(err.__cause__, FileNotFoundError)
    with pytest.raises(VariableError) as info:
        var.latest(timeout=0.05)  # blocks, then raises the last error (not a timeout)
    assert info.value.code is ErrorCode.NOT_FOUND
    waiter_result: list[Any] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(var.latest(timeout=LONG)))
    waiter.start()
    write_in_place(path, '{"ready": true}')  # may be read half-written: wait for the value
    watch_value(var, {"ready": True})
    waiter.join(LONG)
    assert waiter_result[0].value == {"ready": True}


def test_decoders_on_real_files(tmp_path: Path, closing: list[Any]) -> None:
    @dataclass
    class Feature:
        name: str
        enabled: bool

    (tmp_path / "b").write_bytes(b"\x00\x01\xff")
    (tmp_path / "s").write_text("text ✓")
    (tmp_path / "m").write_text('{"k": [1, 2]}')
    (tmp_path / "t").write_text('[{"name": "dark-mode", "enabled": true}]')
    (tmp_path / "empty").write_bytes(b"")
    cases: list[tuple[Variable[Any], Any]] = [
        (open_file_variable(tmp_path / "b", BYTES), b"\x00\x01\xff"),
        (open_file_variable(tmp_path / "s", STRING), "text ✓"),
        (open_file_variable(tmp_path / "m", JSONMAP), {"k": [1, 2]}),
        (
            open_file_variable(tmp_path / "t", json_decoder(list[Feature])),
            [Feature("dark-mode", True)],
        ),
        (open_file_variable(tmp_path / "empty", STRING), ""),
        (open_file_variable(tmp_path / "empty", BYTES), b""),
    ]
    closing.extend(var for var, _ in cases)
    for var, expected in cases:
        assert var.watch(timeout=LONG).value == expected
    empty_json = open_file_variable(tmp_path / "empty", JSONMAP)
    closing.append(empty_json)
    assert watch_error(empty_json).code is ErrorCode.UNKNOWN


def test_invalid_json_after_good_value(tmp_path: Path, closing: list[Any], spy: ReadSpy) -> None:
    path = tmp_path / "conf.json"
    path.write_text('{"v": 1}')
    var = open_file_variable(path, JSONMAP)
    closing.append(var)
    assert var.watch(timeout=LONG).value == {"v": 1}

    write_atomic(path, "not json")  # atomic: no truncated state in between
    err = watch_error(var)
    assert err.code is ErrorCode.UNKNOWN
    assert isinstance(err.__cause__, json.JSONDecodeError)
    assert "not json" not in str(err)  # the content is never quoted
    assert var.latest(timeout=0).value == {"v": 1}  # latest keeps the last good value
    var.check_health()

    # Different bytes, same error message: no new state.
    mark = spy.mark()
    write_atomic(path, "nope json")
    spy.wait_read(mark, lambda r: r == b"nope json")
    no_new_state(var)

    write_atomic(path, '{"v": 2}')  # fixed content is seen at once, not after `wait`
    assert var.watch(timeout=LONG).value == {"v": 2}


def test_equal_bytes_touch_and_chmod_are_no_new_state(
    tmp_path: Path, closing: list[Any], spy: ReadSpy
) -> None:
    path = tmp_path / "same.txt"
    path.write_text("same")
    var = open_file_variable(path, STRING)
    closing.append(var)
    first = var.watch(timeout=LONG)
    changes: list[Callable[[], None]] = [
        lambda: rewrite_without_truncating(path, b"same"),
        lambda: write_atomic(path, "same"),
        lambda: os.utime(path),
        lambda: os.chmod(path, 0o640),
    ]
    for change in changes:
        mark = spy.mark()
        change()
        spy.wait_read(mark, lambda r: r == b"same")
        no_new_state(var)
    assert var.latest(timeout=0) is first
    driver = var._driver
    assert isinstance(driver, filevar.FileDriver)
    assert driver._retry is None  # a good value schedules no retry: idle means idle


def test_in_place_write_and_atomic_rename(tmp_path: Path, closing: list[Any]) -> None:
    path = tmp_path / "v.txt"
    path.write_text("0")
    var = open_file_variable(path, STRING)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "0"
    for i in range(1, 6):
        if i % 2:
            write_in_place(path, str(i))
        else:
            write_atomic(path, str(i))
        # In-place writes may expose the truncated (empty) file first: wait for the value.
        watch_value(var, str(i))


def test_editor_style_saves_are_followed(tmp_path: Path, closing: list[Any]) -> None:
    path = tmp_path / "edit.txt"
    path.write_text("v0")
    var = open_file_variable(path, STRING)
    closing.append(var)
    var.watch(timeout=LONG)
    # vim (backup by rename): rename original away, write a new file, delete backup.
    os.rename(path, tmp_path / "edit.txt~")
    path.write_text("v1")
    os.remove(tmp_path / "edit.txt~")
    watch_until(var, lambda s: s.value == "v1")
    # Emacs/IDE style: write a temp file in the same dir, rename over the original.
    write_atomic(path, "v2")
    watch_until(var, lambda s: s.value == "v2")
    # Delete then write (some tools do this).
    path.unlink()
    path.write_text("v3")
    watch_until(var, lambda s: s.value == "v3")


def test_delete_then_recreate(tmp_path: Path, closing: list[Any]) -> None:
    path = tmp_path / "d.txt"
    path.write_text("first")
    var = open_file_variable(path, STRING)
    closing.append(var)
    good = var.watch(timeout=LONG)
    path.unlink()
    assert watch_error(var).code is ErrorCode.NOT_FOUND
    assert var.latest(timeout=0) is good
    var.check_health()
    driver = var._driver
    assert isinstance(driver, filevar.FileDriver)
    assert driver._retry is None  # creation is a file event: no timer while missing
    path.write_text("first")  # same bytes as before the delete: still a new state
    watch_value(var, "first")
    path.unlink()
    assert watch_error(var).code is ErrorCode.NOT_FOUND
    write_atomic(path, "second")
    assert var.watch(timeout=LONG).value == "second"


def test_close_semantics_with_real_watcher(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    var = open_file_variable(path, STRING)
    assert watch_error(var).code is ErrorCode.NOT_FOUND
    results: list[Any] = []

    def call(fn: Callable[[], Any]) -> None:
        try:
            results.append(fn())
        except BaseException as exc:
            results.append(exc)

    threads = [
        threading.Thread(target=call, args=(var.watch,)),
        threading.Thread(target=call, args=(var.latest,)),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + LONG
    while len(var._cond._waiters) < 2:  # type: ignore[attr-defined]  # both blocked
        assert time.monotonic() < deadline, "callers never blocked"
        time.sleep(0.005)
    var.close()
    for t in threads:
        t.join(LONG)
    assert results == [ERR_CLOSED, ERR_CLOSED]
    assert str(path.parent) not in REGISTRY.watched_directories()
    assert str(path.parent) not in REGISTRY.native_directories()
    for fn in (var.watch, var.latest, var.check_health, var.close):
        with pytest.raises(VariableError) as info:
            fn()
        assert info.value is ERR_CLOSED
    path.write_text("after close")  # nothing observes it, nothing breaks


def test_latest_timeout_zero_never_blocks(tmp_path: Path, closing: list[Any]) -> None:
    var = open_file_variable(tmp_path / "none", STRING)
    closing.append(var)
    start = time.monotonic()
    for _ in range(100):
        with pytest.raises(VariableError):
            var.latest(timeout=0)
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("writer", [write_in_place, write_atomic])
def test_many_rapid_writes_end_with_final_value(
    tmp_path: Path, closing: list[Any], writer: Callable[[Path, str], None]
) -> None:
    path = tmp_path / "rapid.json"
    path.write_text('{"n": 0}')
    var = open_file_variable(path, JSONMAP)
    closing.append(var)
    var.watch(timeout=LONG)
    for n in range(1, 301):
        writer(path, json.dumps({"n": n}))
    watch_until(var, lambda s: s.value == {"n": 300})
    assert var.latest(timeout=0).value == {"n": 300}


def test_concurrent_latest_callers_on_a_real_file(tmp_path: Path, closing: list[Any]) -> None:
    path = tmp_path / "shared.txt"
    var = open_file_variable(path, STRING)
    closing.append(var)
    results: list[Any] = []
    lock = threading.Lock()

    def reader() -> None:
        snap = var.latest(timeout=LONG)
        with lock:
            results.append(snap.value)

    threads = [threading.Thread(target=reader) for _ in range(20)]
    for t in threads:
        t.start()
    write_atomic(path, "go")
    for t in threads:
        t.join(LONG)
    assert results == ["go"] * 20


def test_directory_is_invalid_argument_and_retried(tmp_path: Path, closing: list[Any]) -> None:
    path = tmp_path / "adir"
    path.mkdir()
    var = open_variable(f"file://{path}?decoder=string&wait=100ms")
    closing.append(var)
    err = watch_error(var)
    assert err.code is ErrorCode.INVALID_ARGUMENT
    assert "is a directory" in str(err)
    path.rmdir()
    path.write_text("now a file")
    watch_value(var, "now a file")


def test_retry_timer_thread_ends_when_nothing_is_pending(tmp_path: Path) -> None:
    from caproni_tasks.runtimevar.scheduler import SCHEDULER

    def retry_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "runtimevar-retry"]

    (tmp_path / "adir").mkdir()
    var = open_file_variable(tmp_path / "adir", STRING)  # a directory: retried every 30 s
    try:
        assert watch_error(var).code is ErrorCode.INVALID_ARGUMENT
        assert SCHEDULER.pending() >= 1 and retry_threads()
    finally:
        var.close()
    wait_for(lambda: not retry_threads())  # at once, not when the cancelled retry was due
    assert SCHEDULER.pending() == 0


def test_fifo_is_refused_without_hanging(tmp_path: Path, closing: list[Any]) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    var = open_file_variable(fifo, BYTES)
    closing.append(var)
    err = watch_error(var)
    assert err.code is ErrorCode.INVALID_ARGUMENT
    assert "not a regular file" in str(err)


def test_errors_no_event_clears_are_retried_every_wait(
    tmp_path: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.txt"
    path.write_text("secret")
    real = filevar.read_bytes
    denied = threading.Event()
    denied.set()

    def flaky(p: str) -> bytes:
        if denied.is_set():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), p)
        return real(p)

    monkeypatch.setattr(filevar, "read_bytes", flaky)
    var = open_file_variable(path, STRING, wait=0.1)
    closing.append(var)
    err = watch_error(var)
    assert err.code is ErrorCode.PERMISSION_DENIED
    assert isinstance(err.__cause__, PermissionError)
    denied.clear()  # no file event happens: only the retry can see the change
    assert var.watch(timeout=LONG).value == "secret"


@pytest.mark.parametrize(
    ("number", "code", "words"),
    [
        (errno.ENOENT, ErrorCode.NOT_FOUND, "file does not exist"),
        (errno.ENOTDIR, ErrorCode.NOT_FOUND, "file does not exist"),
        (errno.EACCES, ErrorCode.PERMISSION_DENIED, "permission denied"),
        (errno.EPERM, ErrorCode.PERMISSION_DENIED, "permission denied"),
        (errno.EISDIR, ErrorCode.INVALID_ARGUMENT, "is a directory"),
        (errno.ELOOP, ErrorCode.INVALID_ARGUMENT, "symbolic links"),
        (errno.EMFILE, ErrorCode.RESOURCE_EXHAUSTED, ""),
        (errno.EIO, ErrorCode.UNKNOWN, ""),
    ],
)
def test_os_error_mapping(number: int, code: ErrorCode, words: str) -> None:
    exc = OSError(number, os.strerror(number), "/x")
    err = filevar.error_for_os_error("/x", exc)
    assert err.code is code and words in str(err) and err.__cause__ is exc
    assert str(err).startswith("/x: ")


PERMISSION_CHILD = textwrap.dedent(
    """
    import json, sys
    from caproni_tasks.runtimevar import open_file_variable, STRING
    var = open_file_variable(sys.argv[1], STRING, wait=float(sys.argv[2]))
    for item in var.changes(errors="yield"):
        if isinstance(item, Exception):
            print(json.dumps({"code": item.code.name, "message": str(item)}), flush=True)
        else:
            print(json.dumps({"value": item.value}), flush=True)
    """
)


def _unprivileged(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot lose DAC override")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]


def test_permission_denied_then_granted_real_process(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    path = tmp_path / "private.txt"
    path.write_text("token")
    path.chmod(0)
    cmd = _unprivileged([sys.executable, "-c", PERMISSION_CHILD, str(path), "60"])
    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env
    )
    try:
        assert child.stdout is not None
        first = json.loads(child.stdout.readline() or "{}")
        if first.get("value") == "token":
            pytest.skip("permissions are not enforced here")
        assert first.get("code") == "PERMISSION_DENIED", first
        assert "permission denied" in first["message"]
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)  # an attribute event: seen at once
        second = json.loads(child.stdout.readline() or "{}")
        assert second == {"value": "token"}
    finally:
        child.kill()
        child.wait(LONG)


def test_symlink_swap_kubernetes_style(tmp_path: Path, closing: list[Any]) -> None:
    def publish(version: str, value: str) -> None:
        data_dir = tmp_path / f"..{version}"
        data_dir.mkdir()
        (data_dir / "key").write_text(value)
        tmp_link = tmp_path / "..data_tmp"
        tmp_link.symlink_to(data_dir.name)
        os.replace(tmp_link, tmp_path / "..data")

    publish("2026_11_21_v1", "one")
    (tmp_path / "key").symlink_to("..data/key")
    var = open_file_variable(tmp_path / "key", STRING)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "one"
    publish("2026_11_21_v2", "two")
    shutil.rmtree(tmp_path / "..2026_11_21_v1")
    assert watch_until(var, lambda s: s.value == "two").value == "two"
    publish("2026_11_21_v3", "three")  # old target kept: the swap alone must be seen
    assert watch_until(var, lambda s: s.value == "three").value == "three"


def test_symlink_to_a_file_elsewhere_follows_in_place_edits(
    tmp_path: Path, closing: list[Any]
) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (real_dir / "conf.txt").write_text("a")
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    (link_dir / "conf.txt").symlink_to(real_dir / "conf.txt")
    var = open_file_variable(link_dir / "conf.txt", STRING)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "a"
    write_in_place(real_dir / "conf.txt", "b")
    watch_until(var, lambda s: s.value == "b")
    (real_dir / "other.txt").write_text("c")
    os.replace(link_dir / "conf.txt", link_dir / "old")  # break the link ...
    (link_dir / "conf.txt").symlink_to(real_dir / "other.txt")  # ... and re-point it
    watch_until(var, lambda s: s.value == "c")


def test_missing_parent_directories_are_watched_from_nearest_ancestor(
    tmp_path: Path, closing: list[Any]
) -> None:
    path = tmp_path / "a" / "b" / "v.txt"
    var = open_file_variable(path, STRING)
    closing.append(var)
    assert watch_error(var).code is ErrorCode.NOT_FOUND
    assert str(tmp_path) in REGISTRY.watched_directories()
    path.parent.mkdir(parents=True)
    path.write_text("deep")
    assert watch_until(var, lambda s: s.value == "deep").value == "deep"
    assert str(path.parent) in REGISTRY.watched_directories()


def test_watched_directory_deleted_and_recreated(tmp_path: Path, closing: list[Any]) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "v.txt"
    path.write_text("1")
    var = open_file_variable(path, STRING)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "1"
    shutil.rmtree(folder)
    assert watch_error(var).code is ErrorCode.NOT_FOUND
    folder.mkdir()
    path.write_text("2")
    assert watch_until(var, lambda s: s.value == "2").value == "2"
    # and the directory moved away, a new one put in its place
    folder.rename(tmp_path / "conf.old")
    folder.mkdir()
    (folder / "v.txt").write_text("3")
    assert watch_until(var, lambda s: s.value == "3").value == "3"


def recreate_and_watch(tmp_path: Path, closing: list[Any], rounds: int) -> None:
    """Rounds of rm -rf + mkdir + write + edit; the variable sees every value."""
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "v.txt"
    path.write_text("0")
    var = open_file_variable(path, STRING)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "0"
    for round_ in range(1, rounds + 1):
        shutil.rmtree(folder)
        folder.mkdir()
        path.write_text(f"{round_}")
        watch_value(var, f"{round_}")
        path.write_text(f"{round_} edited")
        watch_value(var, f"{round_} edited")


def test_directory_recreated_at_once_keeps_being_watched(
    tmp_path: Path, closing: list[Any]
) -> None:
    """rm -rf + mkdir in one go: ext4 hands the new directory the old inode number, so
    only the deletion event can tell that the old watch died with the old directory."""
    recreate_and_watch(tmp_path, closing, rounds=3)


def test_directory_recreated_again_and_again_never_goes_blind(
    tmp_path: Path, closing: list[Any]
) -> None:
    """Twenty rounds: a directory that appears while its watch is being placed must
    still be watched (the race that once left a variable watching only the parent, or
    deadlocked a refresh against the layer)."""
    recreate_and_watch(tmp_path, closing, rounds=20)


def test_project_inside_dot_venv_is_not_ignored(tmp_path: Path, closing: list[Any]) -> None:
    folder = tmp_path / ".venv" / "node_modules" / "__pycache__"
    folder.mkdir(parents=True)
    var = open_file_variable(folder / "x.txt", STRING)
    closing.append(var)
    watch_error(var)
    (folder / "x.txt").write_text("seen")
    watch_value(var, "seen")


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "caproni-watch"]


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + LONG
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.01)


def wait_no_watcher_threads() -> None:
    wait_for(lambda: not watcher_threads())


def test_variables_in_one_directory_share_one_watcher(tmp_path: Path) -> None:
    names = [f"v{i}.txt" for i in range(5)]
    for name in names:
        (tmp_path / name).write_text(name)
    variables = [open_file_variable(tmp_path / n, STRING) for n in names]
    try:
        assert REGISTRY.watched_directories()[str(tmp_path)] == 5
        assert REGISTRY.native_directories() == [str(tmp_path)]
        assert len(watcher_threads()) == 1
        for var, name in zip(variables, names, strict=True):
            assert var.watch(timeout=LONG).value == name
        write_atomic(tmp_path / "v3.txt", "changed")
        assert variables[3].watch(timeout=LONG).value == "changed"
        for i in (0, 1, 2, 4):
            no_new_state(variables[i])  # filtered by path: others are not disturbed
        for var in variables[:4]:
            var.close()
        assert REGISTRY.watched_directories()[str(tmp_path)] == 1
        assert len(watcher_threads()) == 1
    finally:
        variables[4].close()
    assert str(tmp_path) not in REGISTRY.watched_directories()
    assert REGISTRY.native_directories() == []
    assert watcher_threads() == []  # close joined it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_many_directories_share_one_thread_and_closing_releases_everything(
    tmp_path: Path,
) -> None:
    wait_for(lambda: kernel_watches() == LAYER.kernel_watches())  # none closing still
    before = kernel_watches()
    folders = [tmp_path / f"d{i}" for i in range(30)]
    variables = []
    try:
        for i, folder in enumerate(folders):
            folder.mkdir()
            (folder / "v.txt").write_text(f"{i}")
            variables.append(open_file_variable(folder / "v.txt", STRING))
        assert REGISTRY.native_directories() == sorted(str(f) for f in folders)
        assert len(watcher_threads()) == 1  # one thread, one inotify, whatever the count
        # one kernel watch per directory (a notifier rebuilt for each new directory lets
        # go of its predecessors' on their threads, a moment later)
        wait_for(lambda: kernel_watches() == before + 30)
        for i in (0, 17, 29):
            write_atomic(folders[i] / "v.txt", f"{i} changed")
        for i, var in enumerate(variables):
            expected = f"{i} changed" if i in (0, 17, 29) else f"{i}"
            assert var.latest(timeout=LONG).value in (f"{i}", expected)
            if expected != f"{i}":
                watch_value(var, expected)
        for var in variables[::2]:
            var.close()  # each removal drops one kernel watch: the others keep working
        for i in (1, 15, 29):
            write_atomic(folders[i] / "v.txt", f"{i} again")
            watch_value(variables[i], f"{i} again")
    finally:
        for var in variables:
            if not var.closed:
                var.close()
    assert REGISTRY.native_directories() == []
    wait_no_watcher_threads()
    wait_for(lambda: kernel_watches() == before)


def test_async_face_with_real_files(tmp_path: Path) -> None:
    paths = [tmp_path / f"a{i}.json" for i in range(10)]
    variables = [open_file_variable(p, JSONMAP) for p in paths]

    async def follow(var: Variable[Any]) -> dict[str, Any]:
        async for snap in var.changes_async(errors="skip"):
            value: dict[str, Any] = snap.value
            if value.get("done"):
                return value
        raise AssertionError("closed early")

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.create_task(follow(v)) for v in variables]
        with pytest.raises(VariableError) as info:
            await variables[0].latest_async(timeout=0.02)
        assert info.value.code is ErrorCode.NOT_FOUND

        def produce() -> None:
            for p in paths:
                write_atomic(p, '{"done": true}')

        await asyncio.to_thread(produce)
        first = await variables[0].latest_async(timeout=LONG)
        assert first.value == {"done": True}
        return await asyncio.wait_for(asyncio.gather(*tasks), LONG)

    try:
        assert asyncio.run(main()) == [{"done": True}] * 10
    finally:
        for var in variables:
            var.close()


def test_watch_points_follow_links_and_missing_parts(tmp_path: Path) -> None:
    real = tmp_path / "..v1"
    real.mkdir()
    (real / "key").write_text("x")
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "key").symlink_to("..data/key")
    base = str(tmp_path.resolve())
    assert filevar.watch_points(str(tmp_path / "key")) == {
        base: frozenset({f"{base}/key", f"{base}/..data"}),
        f"{base}/..v1": frozenset({f"{base}/..v1/key"}),
    }
    assert filevar.watch_points(str(tmp_path / "a" / "b" / "c")) == {base: frozenset({f"{base}/a"})}
    (tmp_path / "file").write_text("")
    assert filevar.watch_points(str(tmp_path / "file" / "x")) == {base: frozenset({f"{base}/file"})}
    (tmp_path / "loop").symlink_to("loop")
    assert filevar.watch_points(str(tmp_path / "loop")) == {base: frozenset({f"{base}/loop"})}


def test_a_file_in_place_of_the_parent_directory(tmp_path: Path, closing: list[Any]) -> None:
    (tmp_path / "conf").write_text("I am a file")
    var = open_file_variable(tmp_path / "conf" / "v.txt", STRING)
    closing.append(var)
    assert watch_error(var).code is ErrorCode.NOT_FOUND
    (tmp_path / "conf").unlink()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "v.txt").write_text("ok")
    assert watch_until(var, lambda s: s.value == "ok").value == "ok"


def test_falls_back_to_polling_at_the_kernel_watch_limit(
    tmp_path: Path,
    closing: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    watch_backend: str,
) -> None:
    from caproni_tasks import fswatch

    if watch_backend != "inotify":
        pytest.skip("inotify's limit (the notifier's refusals: test_fswatch)")

    def refuse(self: fswatch.Inotify, path: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(fswatch.Inotify, "add_watch", refuse)
    monkeypatch.setattr(LAYER, "_warned", set())
    monkeypatch.setenv("WATCHFILES_POLL_DELAY_MS", "50")
    heard: list[str] = []
    monkeypatch.setattr(LAYER, "notice_listeners", [heard.append])
    var = open_file_variable(tmp_path / "p.txt", STRING)
    closing.append(var)
    watch_error(var)
    assert str(tmp_path) in LAYER.polled_directories()
    (tmp_path / "p.txt").write_text("polled")
    watch_value(var, "polled")
    # the poller compares nanosecond mtimes, sizes and inodes: an edit at once is seen
    write_in_place(tmp_path / "p.txt", "POLLED")
    watch_value(var, "POLLED")
    other = tmp_path / "other"
    other.mkdir()
    second = open_file_variable(other / "q.txt", STRING)
    closing.append(second)
    watch_error(second)
    assert len(heard) == 1  # said once, however many directories are refused
    assert "fs.inotify.max_user_watches" in heard[0]


def test_watchfiles_force_polling_is_honoured(
    tmp_path: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "1")
    monkeypatch.setenv("WATCHFILES_POLL_DELAY_MS", "50")
    path = tmp_path / "f.txt"
    path.write_text("one")
    var = open_file_variable(path, STRING)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "one"
    assert REGISTRY.native_directories() == []
    assert str(tmp_path) in LAYER.polled_directories()
    write_in_place(path, "two")
    watch_value(var, "two")


def test_unwatchable_directory_is_retried_every_wait(
    tmp_path: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(directory: str, paths: frozenset[str], callback: Callable[[], None]) -> Any:
        raise PermissionError(errno.EACCES, "cannot watch", directory)

    monkeypatch.setattr(REGISTRY, "subscribe", refuse)
    path = tmp_path / "u.txt"
    path.write_text("one")
    var = open_file_variable(path, STRING, wait=0.1)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "one"
    write_atomic(path, "two")  # no watcher: only the retry (every 100 ms) can see it
    assert var.watch(timeout=LONG).value == "two"


def test_touching_the_directory_keeps_its_watcher(
    tmp_path: Path, closing: list[Any], spy: ReadSpy
) -> None:
    path = tmp_path / "t.txt"
    path.write_text("v")
    var = open_file_variable(path, STRING)
    closing.append(var)
    var.watch(timeout=LONG)
    (watcher_,) = (w for w in REGISTRY._watchers.values() if w.path == str(tmp_path))
    mark = spy.mark()
    os.chmod(tmp_path, 0o755)  # an event on the directory itself: everyone re-reads
    spy.wait_read(mark, lambda r: r == b"v")
    no_new_state(var)
    # same inode: the watch stays
    assert [w for w in REGISTRY._watchers.values() if w.path == str(tmp_path)] == [watcher_]
    write_atomic(path, "w")
    assert var.watch(timeout=LONG).value == "w"


def test_a_directory_vanishing_while_another_is_added(tmp_path: Path, closing: list[Any]) -> None:
    """The shared notifier is rebuilt for the new directory while an old one is already
    gone: the old one is dropped and its variables re-resolve, the new one works."""
    gone, added = tmp_path / "gone", tmp_path / "added"
    gone.mkdir()
    (gone / "v.txt").write_text("old")
    old = open_file_variable(gone / "v.txt", STRING)
    closing.append(old)
    assert old.watch(timeout=LONG).value == "old"
    shutil.rmtree(gone)
    added.mkdir()
    (added / "v.txt").write_text("new")
    new = open_file_variable(added / "v.txt", STRING)  # at once: before the event is seen
    closing.append(new)
    assert new.watch(timeout=LONG).value == "new"
    assert watch_error(old).code is ErrorCode.NOT_FOUND
    write_atomic(added / "v.txt", "new 2")
    watch_value(new, "new 2")
    gone.mkdir()
    (gone / "v.txt").write_text("back")
    watch_value(old, "back")
    # The value may arrive through the parent's watch a moment before the watch moves
    # down into the recreated directory: wait for that, do not race it.
    wait_for(
        lambda: (
            str(gone) in REGISTRY.native_directories()
            and str(added) in REGISTRY.native_directories()
        )
    )


def test_variables_on_a_replaced_directory_follow_the_new_one(
    tmp_path: Path, closing: list[Any]
) -> None:
    """A variable opened on the new directory before the old one's deletion is seen
    takes its path over: the variables still on the old watch re-resolve too."""
    folder, staged = tmp_path / "conf", tmp_path / "conf.new"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    first = open_file_variable(folder / "a.txt", STRING)
    closing.append(first)
    assert first.watch(timeout=LONG).value == "a"
    staged.mkdir()  # a different inode, whatever the filesystem reuses
    (staged / "a.txt").write_text("a2")
    (staged / "b.txt").write_text("b")
    shutil.rmtree(folder)
    staged.rename(folder)
    second = open_file_variable(folder / "b.txt", STRING)  # before the deletion is seen
    closing.append(second)
    assert second.watch(timeout=LONG).value == "b"
    watch_value(first, "a2")
    write_atomic(folder / "a.txt", "a3")
    watch_value(first, "a3")
    write_atomic(folder / "b.txt", "b2")
    watch_value(second, "b2")


def test_no_inotify_falls_back_to_polling(
    tmp_path: Path, closing: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LAYER, "_inotify", None)
    monkeypatch.setattr(LAYER, "_native_failed", True)
    monkeypatch.setenv("WATCHFILES_POLL_DELAY_MS", "50")
    path = tmp_path / "v.txt"
    path.write_text("one")
    var = open_file_variable(path, STRING)
    closing.append(var)
    assert var.watch(timeout=LONG).value == "one"
    assert REGISTRY.native_directories() == []
    write_atomic(path, "two")
    watch_value(var, "two")
