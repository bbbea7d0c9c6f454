"""Benchmark ``invoke ensure`` against its yardsticks, side by side in one run.

1. No-op: ``invoke ensure`` with 50 installed packages (pinned by a versions file)
   versus a bare ``invoke --list`` in the same directory — whole processes.
   Target: ensure <= 2x list.
2. Install a ~100 MB package of 2,000 files from a local directory repository versus
   ``unzip -q`` of the same package file to the same disk — whole processes:
   cold (empty cache) and warm (a second root, instance already cached).
   Target: cold <= 1.5x unzip, warm <= unzip.

Rounds are interleaved (unzip, cold, warm, unzip, …) so background load hits all
alike; medians are reported. ``--baseline DIR`` (a checkout of another commit, e.g.
``git worktree add /tmp/base HEAD~5``) adds its cold and warm installs to every round,
so a change's cost (e.g. the fsyncs of a durable commit) is measured side by side.
Usage::

    python bench/bench_install.py [--rounds 5] [--noop-rounds 15] [--mib 100] [--files 2000]
                                  [--baseline DIR] [--skip-noop]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from caproni_tasks.packages.backends.directory import LocalRepository  # noqa: E402
from caproni_tasks.packages.format import build_package  # noqa: E402

SETTLE_SECONDS = 3.0
TASKS_PY = "import caproni_tasks\nns = caproni_tasks.namespace()\n"


def make_tree(src: Path, total_bytes: int, files: int) -> None:
    """Files of varied size, half random bytes and half text (compresses about 2:1)."""
    rnd = random.Random(7)
    mean = total_bytes // files
    for i in range(files):
        directory = src / f"lib{i % 40:02d}" / f"part{i % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        size = rnd.randint(mean // 50, 2 * mean - mean // 50)
        half = size // 2
        text = (b"caproni-tasks benchmark line %d\n" % i) * (size // 30 + 1)
        (directory / f"file{i:04d}.bin").write_bytes((rnd.randbytes(half) + text)[:size])


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    subprocess.run(["sync"], check=False)  # nobody pays for the previous run's writeback
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_install(
    work: Path, env: dict[str, str], rounds: int, mib: int, files: int, baseline: Path | None
) -> dict[str, list[float]]:
    src = work / "src"
    make_tree(src, mib << 20, files)
    package = work / "big.cipd"
    build_package(src, "bench/big", package)
    shutil.rmtree(src)
    repo_dir = work / "repo"
    repo = LocalRepository(repo_dir)
    iid = repo.register_instance(package)
    repo.set_ref("bench/big", "latest", iid)
    project = work / "install"
    project.mkdir()
    (project / "tasks.py").write_text(TASKS_PY)
    (project / "tools.ensure").write_text(f"$ServiceURL {repo_dir.as_uri()}\n\nbench/big {iid}\n")
    size = package.stat().st_size
    print(f"package: {files} files, {mib} MiB unpacked, {size / 2**20:.1f} MiB zipped")

    invoke = [sys.executable, "-m", "invoke", "ensure"]
    cache = project / "cache"
    commands = {
        "unzip": ["unzip", "-q", str(package), "-d", "u"],
        "cold": [*invoke, "--root", "r1", "--cache-dir", str(cache)],
        "warm": [*invoke, "--root", "r2", "--cache-dir", str(cache)],
    }
    envs = dict.fromkeys(commands, env)
    if baseline is not None:
        base_env = {**env, "PYTHONPATH": str(baseline)}
        base_cache = project / "base-cache"
        commands["base-cold"] = [*invoke, "--root", "b1", "--cache-dir", str(base_cache)]
        commands["base-warm"] = [*invoke, "--root", "b2", "--cache-dir", str(base_cache)]
        envs.update({"base-cold": base_env, "base-warm": base_env})
    results: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(rounds):
        for name in ("u", "r1", "r2", "b1", "b2", "cache", "base-cache"):
            shutil.rmtree(project / name, ignore_errors=True)
        # Deleting 300 MB makes the file system busy for a while (journal, discard):
        # let it settle so the first command of the round is not the one paying.
        subprocess.run(["sync"], check=False)
        time.sleep(SETTLE_SECONDS)
        # Rotate unzip's place in the round; cold always precedes warm (it fills the cache).
        order = ["unzip", "cold", "warm"] if i % 2 == 0 else ["cold", "warm", "unzip"]
        if baseline is not None:
            pair = ["base-cold", "base-warm"]
            order = [*pair, *order] if i % 2 == 0 else [*order, *pair]
        for name in order:
            results[name].append(timed(commands[name], project, envs[name]))
    return results


def bench_noop(work: Path, env: dict[str, str], rounds: int) -> dict[str, list[float]]:
    from tests.helpers_packages import publish

    repo_dir = work / "noop-repo"
    project = work / "noop"
    project.mkdir()
    (project / "tasks.py").write_text(TASKS_PY)
    lines = []
    for i in range(50):
        files = {f"p{i}/bin/tool": "x", **{f"p{i}/share/{j}.txt": "y" for j in range(20)}}
        publish(repo_dir, f"tools/p{i:02d}", files, tags=["version:1"], work_dir=work / "w")
        lines.append(f"tools/p{i:02d} version:1")
    (project / "tools.ensure").write_text(
        f"$ServiceURL {repo_dir.as_uri()}\n$ResolvedVersions tools.versions\n\n"
        + "\n".join(lines)
        + "\n"
    )
    invoke = [sys.executable, "-m", "invoke"]
    subprocess.run([*invoke, "ensure.resolve"], cwd=project, env=env, check=True)
    subprocess.run([*invoke, "ensure"], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
    results: dict[str, list[float]] = {"list": [], "noop": []}
    for _ in range(rounds):
        results["list"].append(timed([*invoke, "--list"], project, env))
        results["noop"].append(timed([*invoke, "ensure"], project, env))
    return results


def show(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} median {median(values):6.3f}s  (runs: {', '.join(f'{v:.3f}' for v in values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--noop-rounds", type=int, default=15)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="work directory (default: a temp dir)"
    )
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare")
    parser.add_argument("--skip-noop", action="store_true", help="only the install benchmark")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-install-", dir=args.dir))
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' runs have bytecode caches
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "caproni_tasks")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    env["XDG_CACHE_HOME"] = str(work / "xdg-cache")
    check: Callable[[bool], str] = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    try:
        if not args.skip_noop:
            noop = bench_noop(work, env, args.noop_rounds)
            ratio = median([n / li for n, li in zip(noop["noop"], noop["list"], strict=True)])
            print(show("invoke --list", noop["list"]))
            print(show("invoke ensure (no-op, 50)", noop["noop"]))
            print(f"no-op / list = {ratio:.2f}  (target <= 2.0: {check(ratio <= 2.0)})")
            print()
        install = bench_install(work, env, args.rounds, args.mib, args.files, args.baseline)
        # Ratios per round (same moment, same disk state), then their median.
        cold = median([c / u for c, u in zip(install["cold"], install["unzip"], strict=True)])
        warm = median([w / u for w, u in zip(install["warm"], install["unzip"], strict=True)])
        print(show("unzip -q", install["unzip"]))
        print(show("invoke ensure (cold cache)", install["cold"]))
        print(show("invoke ensure (warm cache)", install["warm"]))
        print("ratios are medians of per-round ratios")
        print(f"cold / unzip = {cold:.2f}  (target <= 1.5: {check(cold <= 1.5)})")
        print(f"warm / unzip = {warm:.2f}  (target <= 1.0: {check(warm <= 1.0)})")
        if args.baseline is not None:
            for kind in ("cold", "warm"):
                this, base = install[kind], install[f"base-{kind}"]
                print(show(f"baseline ({kind} cache)", base))
                change = median([t / b for t, b in zip(this, base, strict=True)])
                print(f"{kind} / baseline {kind} = {change:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
