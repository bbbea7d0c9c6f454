"""Package repositories: build, register, resolve and fetch, local and over HTTP.

Run: python bench/bench_repository.py [--files 2000] [--mib 100] [--packages 50]

Prints wall-clock figures (best of 3 for the fast ones). The HTTP server is
Python's http.server on 127.0.0.1, serving the local repository directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers_packages import StaticServer

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.backends.static_http import HttpRepository
from caproni_tasks.packages.format import build_package, instance_id_of_file


def best(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_tree(root: Path, files: int, total_mib: int) -> None:
    size = total_mib * (1 << 20) // files
    chunk = os.urandom(size // 2)  # half random, half compressible
    for i in range(files):
        path = root / f"d{i % 40:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(chunk[: size // 2] + bytes(size - size // 2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--packages", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "src"
        make_tree(src, args.files, args.mib)
        pkg = tmp / "big.cipd"
        start = time.perf_counter()
        iid = build_package(src, "bench/big", pkg)
        build_s = time.perf_counter() - start
        size_mib = pkg.stat().st_size / (1 << 20)
        print(f"build {args.files} files / {args.mib} MiB -> {size_mib:.1f} MiB: {build_s:.2f}s")
        hash_s = best(3, lambda: instance_id_of_file(pkg))
        print(f"instance_id_of_file ({size_mib:.1f} MiB): {hash_s:.3f}s")

        repo = LocalRepository(tmp / "repo")
        start = time.perf_counter()
        repo.register_instance(pkg)
        print(f"register (copy + hash + index): {time.perf_counter() - start:.2f}s")
        dest = tmp / "fetched"
        local_fetch = best(3, lambda: repo.fetch_instance("bench/big", iid, dest))
        print(f"local fetch_instance (copy + verify): {local_fetch:.3f}s")
        cp_s = best(3, lambda: shutil.copyfile(pkg, tmp / "cp"))
        print(f"  for comparison, shutil.copyfile: {cp_s:.3f}s")

        small = tmp / "small"
        small.mkdir()
        (small / "f").write_text("x")
        names = [f"bench/p{i:03d}" for i in range(args.packages)]
        for name in names:
            small_pkg = tmp / "small.cipd"
            small_iid = build_package(small, name, small_pkg)
            repo.register_instance(small_pkg)
            repo.set_ref(name, "latest", small_iid)
        local_resolve = best(3, lambda: [repo.resolve_version(n, "latest") for n in names])
        print(f"local resolve {args.packages} packages: {local_resolve * 1000:.1f} ms")

        with StaticServer(repo.root) as server:

            def resolve_keepalive() -> None:
                with HttpRepository(server.url) as http_repo:
                    for name in names:
                        http_repo.resolve_version(name, "latest")

            def resolve_fresh_connections() -> None:
                for name in names:
                    with urllib.request.urlopen(f"{server.url}/{name}/@index.json") as response:
                        response.read()

            def resolve_parallel() -> None:
                with HttpRepository(server.url) as http_repo:
                    threads = [
                        threading.Thread(
                            target=lambda chunk=names[i::4]: [
                                http_repo.resolve_version(n, "latest") for n in chunk
                            ]
                        )
                        for i in range(4)
                    ]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()

            server.reset()
            keep = best(3, resolve_keepalive)
            connections = server.connections / 3
            fresh = best(3, resolve_fresh_connections)
            parallel = best(3, resolve_parallel)
            print(
                f"HTTP resolve {args.packages} packages, keep-alive: {keep * 1000:.1f} ms "
                f"({connections:.0f} connection(s)); a new connection per request (urllib): "
                f"{fresh * 1000:.1f} ms; 4 threads keep-alive: {parallel * 1000:.1f} ms"
            )
            with HttpRepository(server.url) as http_repo:
                http_fetch = best(3, lambda: http_repo.fetch_instance("bench/big", iid, dest))
            print(
                f"HTTP fetch_instance {size_mib:.1f} MiB: {http_fetch:.3f}s "
                f"({size_mib / http_fetch:.0f} MiB/s, verified while streaming)"
            )


if __name__ == "__main__":
    main()
