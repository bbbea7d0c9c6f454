"""Supervisor CPU while idle: ``invoke run`` with N processes, each watching its own tree.

Starts a real ``invoke run`` on a generated project (N processes ``exec sleep 3600``,
each with ``watch: tree<i>/**`` over a tree of 20 directories × 10 files), waits until
every process is up, then reads the supervisor's utime+stime from ``/proc/<pid>/stat``
over a measuring window. Prints the CPU used as a percentage of one core.

    python bench/bench_idle.py [--processes 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers_session import TASKS_PY, start_invoke_run  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def make_project(root: Path, processes: int) -> None:
    (root / "tasks.py").write_text(TASKS_PY)
    lines = ["version: 2", "reloaders:", "  idle:", "    type: process", "    process:"]
    lines.append("      processes:")
    for i in range(processes):
        tree = root / f"tree{i}"
        for d in range(20):
            sub = tree / f"d{d}"
            sub.mkdir(parents=True)
            for f in range(10):
                (sub / f"f{f}.py").write_text("x = 1\n")
        lines += [
            f"        p{i}:",
            f"          command: echo up-{i}; exec sleep 3600",
            "          watch:",
            f"            - tree{i}/**/*.py",
        ]
    (root / "caproni.yaml").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        root = Path(tmp)
        make_project(root, args.processes)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        log = root / "run.log"
        proc = start_invoke_run(root, env, log)
        try:
            deadline = time.monotonic() + 60
            while log.read_text(errors="replace").count("| up-") < args.processes:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("processes did not come up:\n" + log.read_text())
                time.sleep(0.1)
            time.sleep(1.0)  # let start-up work finish
            before, started = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.seconds)
            used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - started
            percent = 100 * used / elapsed
            print(
                f"idle supervisor: {args.processes} processes, {args.processes} watched trees "
                f"(200 files each): {percent:.2f}% of one core over {elapsed:.1f}s "
                f"({used * 1000:.0f} ms CPU), {threads(proc.pid)} threads"
            )
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
