"""Reload latency: from a write to a watched file to the new process's first output line.

The same harness drives three tools on the same machine, one after the other:

- ``invoke run`` (caproni-tasks' supervisor, a real subprocess, as users run it);
- the ``watchfiles`` CLI (``watchfiles "cmd" dir``, installed with watchfiles);
- ``nodemon`` (from /work/nodemon-bench, ``NODEMON`` env, or PATH; skipped if absent).

Each tool runs ``sh -c 'echo BENCH-READY; exec sleep 3600'`` and watches ``src/``. For
each of N changes the harness writes ``src/app.py`` (in place, or atomically: temporary
file + rename), then waits for the next ``BENCH-READY`` line on the tool's output; the
latency is the time between the write and that line. Between changes it waits for a quiet
period so each write is its own burst. Prints p50/p95/max per tool and write mode.

    python bench/bench_reload.py [--changes 30] [--tools caproni,watchfiles,nodemon]
"""

from __future__ import annotations

import argparse
import os
import queue
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
CHILD = f"echo {MARKER}; exec sleep 3600"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


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
    beside = Path(sys.executable).parent / "watchfiles"
    return str(beside) if beside.exists() else "watchfiles"


def command_for(tool: str, project: Path) -> list[str]:
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
            f"          command: {CHILD}\n"
            "          watch:\n"
            "            - src/**\n"
        )
        return [sys.executable, "-m", "invoke", "run"]
    if tool == "watchfiles":
        return [watchfiles_cli(), f"sh -c '{CHILD}'", "src"]
    if tool == "nodemon":
        nodemon = find_nodemon()
        assert nodemon is not None
        return [nodemon, "--watch", "src", "--ext", "py", "--exec", f"sh -c '{CHILD}'"]
    raise ValueError(tool)


class Tool:
    """A running tool whose output lines are timestamped as they arrive."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["NO_COLOR"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.put((time.perf_counter(), raw.decode(errors="replace").rstrip()))

    def next_marker(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no restart seen")
            stamp, line = self.lines.get(timeout=remaining)
            if line.endswith(MARKER):
                return stamp

    def drain(self, quiet: float) -> None:
        """Swallow output until nothing arrived for ``quiet`` seconds."""
        while True:
            try:
                self.lines.get(timeout=quiet)
            except queue.Empty:
                return

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def write_in_place(path: Path, text: str) -> None:
    with path.open("w") as handle:
        handle.write(text)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def measure(tool: str, writer: Callable[[Path, str], None], changes: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        project = Path(tmp)
        (project / "src").mkdir()
        target = project / "src" / "app.py"
        target.write_text("0\n")
        running = Tool(command_for(tool, project), project)
        try:
            running.next_marker(30)
            running.drain(0.5)  # watchers settled
            latencies: list[float] = []
            for i in range(changes):
                start = time.perf_counter()
                writer(target, f"{i + 1}\n")
                latencies.append(running.next_marker(10) - start)
                running.drain(0.3)  # each write its own burst
            return latencies
        finally:
            running.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--tools", default="caproni,watchfiles,nodemon")
    args = parser.parse_args()
    print(f"reload latency, {args.changes} changes per row, {os.cpu_count()} CPUs")
    print(f"{'tool':<12}{'write':<10}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for tool in args.tools.split(","):
        if tool == "nodemon" and find_nodemon() is None:
            print(f"{tool:<12}skipped: nodemon/node not found (npm install --prefix …)")
            continue
        for mode, writer in (("in-place", write_in_place), ("atomic", write_atomic)):
            try:
                lat = [x * 1000 for x in measure(tool, writer, args.changes)]
            except TimeoutError as exc:
                print(f"{tool:<12}{mode:<10}failed: {exc}")
                continue
            p50, p95 = statistics.median(lat), percentile(lat, 95)
            print(f"{tool:<12}{mode:<10}{p50:>9.1f}{p95:>9.1f}{max(lat):>9.1f}", flush=True)


if __name__ == "__main__":
    main()
