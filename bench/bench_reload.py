"""Reload latency: from a write to a watched file to the new child's first output line.

Every tool runs the same Python child (``python child.py``: prints ``BENCH-READY <pid>``,
then sleeps) and watches ``src/`` of a project of its own. All tools run at the same
time and the changes are interleaved: change *i* is made to every tool's project in
turn (in a shuffled order), so load on the shared machine hits every tool alike. Tools:

- ``floor``: a stdlib restart loop — inotify on ``src/`` (close-after-write and
  rename-onto), SIGTERM + waitpid, spawn the child. Nothing does less work;
- ``spawn``: no watching at all — the time from ``Popen`` to the child's first line;
- ``caproni``: ``invoke run`` (caproni-tasks' supervisor, a real subprocess, as users
  run it);
- ``nodemon``: ``nodemon --watch src --ext py`` (from /work/nodemon-bench,
  ``NODEMON`` env, or PATH; skipped if absent);
- ``watchfiles``: the ``watchfiles`` CLI (not run unless named: ~100 ms by design).

Writes alternate between in place and atomic (temporary file + rename). After each
change the harness waits for a quiet period and counts any extra restart; at the end
it checks that no child outlived its tool (orphans).

    python bench/bench_reload.py [--changes 40] [--tools floor,spawn,caproni,nodemon]
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

MARKER = "BENCH-READY"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = sys.executable

CHILD = f"""\
import os, time
print("{MARKER}", time.perf_counter(), os.getpid(), flush=True)
time.sleep(3600)
"""

#: The floor: the least a restart-on-change loop can do, with the standard library.
FLOOR = """\
import ctypes, os, select, signal, struct, subprocess, sys

libc = ctypes.CDLL(None, use_errno=True)
IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
fd = libc.inotify_init1(os.O_CLOEXEC)
libc.inotify_add_watch(fd, b"src", IN_CLOSE_WRITE | IN_MOVED_TO)
argv = sys.argv[1:]
child = subprocess.Popen(argv)
signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), child.wait(), sys.exit(0)))
while True:
    data = os.read(fd, 65536)
    names = set()
    offset = 0
    while offset < len(data):
        _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
        names.add(data[offset + 16 : offset + 16 + length].rstrip(b"\\0"))
        offset += 16 + length
    if b"app.py" not in names:
        continue
    child.terminate()
    child.wait()
    child = subprocess.Popen(argv)
"""


def find_nodemon() -> str | None:
    candidates = [
        os.environ.get("NODEMON"),
        "/work/nodemon-bench/node_modules/.bin/nodemon",
        shutil.which("nodemon"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and shutil.which("node"):
            return candidate
    return None


def watchfiles_cli() -> str:
    beside = Path(PYTHON).parent / "watchfiles"
    return str(beside) if beside.exists() else "watchfiles"


def command_for(tool: str, project: Path) -> list[str]:
    child = f"{PYTHON} child.py"
    if tool == "caproni":
        (project / "tasks.py").write_text("import caproni_tasks\nns = caproni_tasks.namespace()\n")
        (project / "caproni.yaml").write_text(
            "version: 2\n"
            "reloaders:\n"
            "  bench:\n"
            "    type: process\n"
            "    process:\n"
            "      processes:\n"
            "        app:\n"
            f"          command: {child}\n"
            "          watch:\n"
            "            - src/**\n"
        )
        return [PYTHON, "-m", "invoke", "run"]
    if tool == "floor":
        (project / "floor.py").write_text(FLOOR)
        return [PYTHON, "floor.py", PYTHON, "child.py"]
    if tool == "spawn":
        return [PYTHON, "child.py"]
    if tool == "watchfiles":
        return [watchfiles_cli(), child, "src"]
    if tool == "nodemon":
        nodemon = find_nodemon()
        assert nodemon is not None
        return [nodemon, "--watch", "src", "--ext", "py", "--exec", child]
    raise ValueError(tool)


class Tool:
    """A running tool in its project; its output lines are timestamped as they arrive."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.project = root / name
        (self.project / "src").mkdir(parents=True)
        (self.project / "child.py").write_text(CHILD)
        self.target = self.project / "src" / "app.py"
        self.target.write_text("0\n")
        self.argv = command_for(name, self.project)
        self.latencies: dict[str, list[float]] = {"in-place": [], "atomic": []}
        #: Write -> the child's first statement, and that line's trip to the harness
        #: (through the tool's output multiplexing, if any): where the time goes.
        self.to_child: list[float] = []
        self.hop: list[float] = []
        self.printed = 0.0
        self.extra = 0
        self.pids: set[int] = set()
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["NO_COLOR"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return started

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.put((time.perf_counter(), raw.decode(errors="replace").rstrip()))

    def next_marker(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no restart seen")
            try:
                stamp, line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if MARKER in line:
                words = line.split()
                self.pids.add(int(words[-1]))
                self.printed = float(words[-2])
                self.hop.append(stamp - self.printed)
                return stamp

    def drain(self, quiet: float) -> int:
        """Swallow output until nothing arrived for ``quiet`` seconds; count restarts."""
        restarts = 0
        while True:
            try:
                _stamp, line = self.lines.get(timeout=quiet)
            except queue.Empty:
                return restarts
            if MARKER in line:
                self.pids.add(int(line.rpartition(" ")[2]))
                restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def orphans(self) -> list[int]:
        """Children still alive after the tool stopped (give them a second to go)."""
        deadline = time.monotonic() + 1.0
        while True:
            alive = [pid for pid in sorted(self.pids) if _alive(pid)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def write_in_place(path: Path, text: str) -> None:
    with path.open("w") as handle:
        handle.write(text)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


WRITERS: dict[str, Callable[[Path, str], None]] = {
    "in-place": write_in_place,
    "atomic": write_atomic,
}


def spawn_alone(root: Path, runs: int) -> list[float]:
    tool = Tool("spawn", root)
    found = []
    for _ in range(runs):
        tool.lines = queue.Queue()
        started = tool.start()
        found.append(tool.next_marker(10) - started)
        tool.stop()
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def row(name: str, mode: str, values: list[float], extra: str = "") -> str:
    ms = [v * 1000 for v in values]
    return (
        f"| {name} | {mode} | {len(ms)} | {statistics.median(ms):.1f} "
        f"| {percentile(ms, 95):.1f} | {max(ms):.1f} | {extra} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=40, help="per tool (half atomic)")
    parser.add_argument("--tools", default="floor,spawn,caproni,nodemon")
    parser.add_argument("--quiet", type=float, default=0.25, help="seconds between changes")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    random.seed(args.seed)
    names = args.tools.split(",")
    if "nodemon" in names and find_nodemon() is None:
        print("nodemon skipped: nodemon/node not found (npm install --prefix /work/nodemon-bench)")
        names.remove("nodemon")
    load_before = os.getloadavg()
    print(
        f"reload latency: {args.changes} changes per tool, python child, "
        f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"
    )
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        root = Path(tmp)
        watchers = [Tool(name, root) for name in names if name != "spawn"]
        spawn_runs: list[float] = []
        try:
            for tool in watchers:
                tool.start()
            for tool in watchers:
                tool.next_marker(30)
                tool.drain(1.0)  # watches settled
            for i in range(args.changes):
                mode = "in-place" if i % 2 == 0 else "atomic"
                order = list(watchers)
                random.shuffle(order)
                for tool in order:
                    time.sleep(random.uniform(0, 0.01))  # land anywhere in a tool's cycle
                    start = time.perf_counter()
                    WRITERS[mode](tool.target, f"{i + 1}\n")
                    tool.latencies[mode].append(tool.next_marker(10) - start)
                    tool.to_child.append(tool.printed - start)
                    tool.extra += tool.drain(args.quiet)
                if "spawn" in names and i % 2 == 1:
                    spawn_runs.extend(spawn_alone(root / f"s{i}", 1))
        finally:
            for tool in watchers:
                tool.stop()
        print()
        print("| tool | write | changes | p50 ms | p95 ms | max ms | extra restarts, orphans |")
        print("|---|---|---:|---:|---:|---:|---|")
        if spawn_runs:
            rows.append(row("spawn alone", "-", spawn_runs))
        for tool in watchers:
            orphans = tool.orphans()
            for mode, values in tool.latencies.items():
                rows.append(row(tool.name, mode, values, f"{tool.extra}, {len(orphans)}"))
            both = tool.latencies["in-place"] + tool.latencies["atomic"]
            rows.append(row(tool.name, "both", both, f"{tool.extra}, {len(orphans)}"))
            rows.append(row(tool.name, "→ child runs", tool.to_child))
            rows.append(row(tool.name, "line → harness", tool.hop))
    for line in rows:
        print(line)
    load_after = os.getloadavg()
    print()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
