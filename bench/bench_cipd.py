"""Benchmark ``invoke ensure`` against ``invoke pkg.serve`` over the CIPD protocol.

The server runs in this process (uvicorn in a thread, the real application) behind a
small ASGI wrapper that counts requests per pRPC method and the most calls in flight
at once; every ``invoke`` is a separate process, as a user runs it. Side by side in one
run, rounds interleaved, medians reported:

1. 50 tag-pinned packages: the first ``invoke ensure`` (empty caches) makes one
   ResolveVersion per package, several in flight at once; a second run on another
   root with the same cache (tags remembered) makes none.
2. No-op ``invoke ensure`` with everything installed and a versions file: zero
   requests; time against a bare ``invoke --list`` (target <= 1.3x).
3. A 100 MiB / 2,000-file package through the service (signed URL download, cold
   cache) against ``unzip -q`` of the same file (target <= 1.6x).

Usage::

    python bench/bench_cipd.py [--rounds 5] [--mib 100] [--files 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench_install import make_tree, timed  # noqa: E402

from caproni_tasks.packages.backends.directory import LocalRepository  # noqa: E402
from caproni_tasks.packages.format import build_package  # noqa: E402

TASKS_PY = "import caproni_tasks\nns = caproni_tasks.namespace()\n"
Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]


class Counting:
    """ASGI middleware: requests per pRPC method (or path kind) and peak concurrency."""

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.peak: Counter[str] = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.peak.clear()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        name = path.rsplit("/", 1)[-1] if path.startswith("/prpc/") else "download"
        with self._lock:
            self.calls[name] += 1
            self.in_flight += 1
            self.peak[name] = max(self.peak[name], self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self.in_flight -= 1


def start_server(repo_dir: Path) -> tuple[str, Counting, Callable[[], None]]:
    import uvicorn

    from caproni_tasks.packages.serve.app import ServeConfig, create_app
    from caproni_tasks.packages.serve.runner import bind, service_url

    counting = Counting(create_app(ServeConfig(repository=repo_dir)))
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(counting, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)
        sock.close()

    return service_url(sock), counting, stop


def project(work: Path, name: str, url: str, lines: list[str], versions: bool) -> Path:
    directory = work / name
    directory.mkdir()
    (directory / "tasks.py").write_text(TASKS_PY)
    (directory / "invoke.yaml").write_text(f"caproni:\n  cipd_services: [{url}]\n")
    settings = f"$ServiceURL {url}\n" + ("$ResolvedVersions tools.versions\n" if versions else "")
    (directory / "tools.ensure").write_text(settings + "\n" + "\n".join(lines) + "\n")
    return directory


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cipd-"))
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' runs have bytecode caches
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    invoke = [sys.executable, "-m", "invoke"]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "caproni_tasks")])
    repo_dir = work / "repo"
    local = LocalRepository(repo_dir)
    lines = []
    for i in range(50):
        src = work / "src" / f"p{i}"
        (src / "bin").mkdir(parents=True)
        (src / "bin" / f"tool{i}").write_text(f"tool {i}\n")
        package = work / f"p{i}.cipd"
        build_package(src, f"tools/p{i:02d}", package)
        iid = local.register_instance(package)
        local.attach_tags(f"tools/p{i:02d}", iid, ["version:1"])
        lines.append(f"tools/p{i:02d} version:1")
    url, counting, stop = start_server(repo_dir)
    try:
        # 1. Tag resolution: first run, then a second root with the same (tag) cache.
        first: list[tuple[float, int, int, int]] = []
        second: list[tuple[float, int]] = []
        for i in range(args.rounds):
            env["XDG_CACHE_HOME"] = str(work / f"xdg-{i}")
            tags = project(work, f"tags-{i}", url, lines, versions=False)
            counting.reset()
            seconds = timed([*invoke, "ensure"], tags, env)
            first.append(
                (
                    seconds,
                    counting.calls["ResolveVersion"],
                    counting.peak["ResolveVersion"],
                    counting.calls["GetInstanceURL"],
                )
            )
            counting.reset()
            seconds = timed([*invoke, "ensure", "--root", ".tools-2"], tags, env)
            second.append((seconds, counting.calls["ResolveVersion"]))
        print(f"service {url}; 50 tag-pinned packages; {args.rounds} rounds")
        calls = sorted({f[1] for f in first})
        peaks = sorted({f[2] for f in first})
        urls = sorted({f[3] for f in first})
        print(
            f"first ensure: median {median([f[0] for f in first]):.3f}s; "
            f"ResolveVersion calls {calls}; most in flight {peaks}; GetInstanceURL {urls}"
        )
        again = sorted({s[1] for s in second})
        print(
            f"second root, same cache: median {median([s[0] for s in second]):.3f}s; "
            f"ResolveVersion calls {again}"
        )

        # 2. No-op with a versions file, against a bare `invoke --list`.
        env["XDG_CACHE_HOME"] = str(work / "xdg-noop")
        noop = project(work, "noop", url, lines, versions=True)
        run([*invoke, "ensure.resolve"], noop, env)
        run([*invoke, "ensure"], noop, env)
        lists: list[float] = []
        noops: list[float] = []
        requests: list[int] = []
        for _ in range(max(3 * args.rounds, 9)):
            lists.append(timed([*invoke, "--list"], noop, env))
            counting.reset()
            noops.append(timed([*invoke, "ensure"], noop, env))
            requests.append(sum(counting.calls.values()))
        ratio = median([n / li for n, li in zip(noops, lists, strict=True)])
        print(
            f"no-op ensure: median {median(noops):.3f}s vs invoke --list {median(lists):.3f}s "
            f"= {ratio:.2f}x (target <= 1.3); requests per run {sorted(set(requests))}"
        )

        # 3. A big package through the service against unzip.
        src = work / "big-src"
        make_tree(src, args.mib << 20, args.files)
        big = work / "big.cipd"
        build_package(src, "bench/big", big)
        shutil.rmtree(src)
        iid = local.register_instance(big)
        local.set_ref("bench/big", "latest", iid)
        install = project(work, "big", url, [f"bench/big {iid}"], versions=False)
        unzips: list[float] = []
        colds: list[float] = []
        for i in range(args.rounds):
            for name in ("u", ".tools"):
                shutil.rmtree(install / name, ignore_errors=True)
            env["XDG_CACHE_HOME"] = str(work / f"xdg-big-{i}")
            order = ["unzip", "cold"] if i % 2 == 0 else ["cold", "unzip"]
            for what in order:
                if what == "unzip":
                    unzips.append(timed(["unzip", "-q", str(big), "-d", "u"], install, env))
                else:
                    colds.append(timed([*invoke, "ensure"], install, env))
        ratio = median([c / u for c, u in zip(colds, unzips, strict=True)])
        size = big.stat().st_size / 2**20
        print(
            f"{args.files} files, {args.mib} MiB ({size:.1f} MiB zipped): ensure through the "
            f"service median {median(colds):.3f}s vs unzip -q {median(unzips):.3f}s = "
            f"{ratio:.2f}x (target <= 1.6)"
        )
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
