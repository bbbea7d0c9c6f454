"""How long caproni.yaml takes to load: a typical file and a large one.

Run: python bench/bench_config.py [--reloaders 50] [--repeat 7]

Prints the median and best wall time of `load_config` for the example Caproni v2 file
and for a generated file with N process reloaders of 3 processes each (with env, watch,
ready and depends_on): cold (``cache=False``: parse + strictyaml schema + semantic
checks) and warm (the validated result read back from the JSON cache), plus the time
of each stage for the large file. The cache lives in a temporary XDG_CACHE_HOME.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from caproni_tasks.config import load_config  # noqa: E402


def large_config(reloaders: int) -> str:
    lines = [
        "version: 2",
        "variables:",
        "  LOG_LEVEL: debug",
        "  HOST: 127.0.0.1",
        "runtimevars:",
        "  TOKEN: file://./vars/token.txt?decoder=string",
        "repositories:",
    ]
    for r in range(reloaders):
        lines += [
            f"  repo{r}:",
            f"    repository: https://example.com/repo{r}.git",
            f"    directory: repos/repo{r}",
        ]
    lines.append("reloaders:")
    for r in range(reloaders):
        lines += [
            f"  svc{r}:",
            "    type: process",
            f"    repository: repo{r}",
            "    process:",
            "      processes:",
        ]
        for p in range(3):
            lines += [
                f"        p{p}:",
                f"          command: python3 -m http.server {8000 + r * 3 + p} --bind ${{HOST}}",
                "          directory: src",
                "          env:",
                "            LOG_LEVEL: ${LOG_LEVEL}",
                "            TOKEN: ${runtimevar:TOKEN}",
                "          watch:",
                '            - "**/*.py"',
                "          ignore:",
                '            - "**/__pycache__/**"',
                "          restart: on-failure",
                "          stop_timeout: 5s",
                "          ready:",
                f"            tcp: {8000 + r * 3 + p}",
            ]
            if p:
                lines += ["          depends_on:", f"            - p{p - 1}"]
            if r and p == 0:
                lines += ["          depends_on:", f"            - svc{r - 1}"]
    return "\n".join(lines) + "\n"


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def stages(path: Path) -> dict[str, float]:
    from caproni_tasks.config.build import Builder
    from caproni_tasks.config.schema import ROOT as SPEC
    from caproni_tasks.config.strict import Checker
    from caproni_tasks.config.yamldoc import Document, parse_yaml

    text = path.read_text()
    t0 = time.perf_counter()
    parsed, _ = parse_yaml(text, str(path))
    t1 = time.perf_counter()
    assert parsed is not None
    doc = Document.of(parsed)
    checker = Checker(doc)
    data = checker.check_root(SPEC)
    t2 = time.perf_counter()
    Builder(doc, {str(path): text}, path.absolute()).build(data, ())
    t3 = time.perf_counter()
    return {"parse (YAML)": t1 - t0, "schema (strictyaml)": t2 - t1, "build + checks": t3 - t2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reloaders", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    example = ROOT / "examples" / "caproni-v2" / "caproni.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        big = Path(tmp) / "caproni.yaml"
        big.write_text(large_config(args.reloaders))
        assert load_config(example).config is not None
        assert load_config(big).config is not None, load_config(big).diagnostics[:3]
        rows = [
            ("example (caproni-v2)", example),
            (f"{args.reloaders} reloaders x 3 processes", big),
        ]
        header = f"{'config':32} {'lines':>6} {'cold median':>12} {'cold best':>10}"
        print(f"{header} {'warm median':>12} {'warm best':>10}   (ms)")
        for label, path in rows:
            cold = measure(functools.partial(load_config, path, cache=False), args.repeat)
            assert load_config(path) == load_config(path, cache=False)
            warm = measure(functools.partial(load_config, path), args.repeat)
            count = len(path.read_text().splitlines())
            print(
                f"{label:32} {count:6d} {cold[0] * 1e3:12.1f} {cold[1] * 1e3:10.1f}"
                f" {warm[0] * 1e3:12.1f} {warm[1] * 1e3:10.1f}"
            )
        print(f"\nstages of the {args.reloaders}-reloader file (one run):")
        for stage, seconds in stages(big).items():
            print(f"  {stage:22} {seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
