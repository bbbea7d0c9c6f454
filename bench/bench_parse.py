"""Parse + resolve of a 10,000-line ensure file (goal: ≤ 150 ms median).

Usage: python bench/bench_parse.py [--lines N] [--runs N]

The file is realistic: settings, verified platforms, a few @Subdir sections, comments,
and package lines with templates and tag versions (all distinct). Resolution uses a
plain dict resolver, so the figure is the language's own cost, not a repository's.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from caproni_tasks.ensure import Pin, instance_id_from_sha256, parse


def make_file(lines: int) -> str:
    out = [
        "$ServiceURL https://chrome-infra-packages.appspot.com",
        "$ParanoidMode CheckPresence",
        "$VerifiedPlatform linux-amd64 mac-arm64",
        "",
    ]
    i = 0
    while len(out) < lines:
        if i % 500 == 0:
            out.append(f"@Subdir tools/group{i // 500}/${{os}}")
        elif i % 25 == 0:
            out.append("# a comment line")
        elif i % 3 == 0:
            out.append(f"infra/tools/pkg{i}/${{platform}}  version:1.{i}.0")
        elif i % 3 == 1:
            out.append(f"infra/3pp/lib{i}/${{os}}-${{arch}}  git_revision:{i:040x}"[:120])
        else:
            out.append(f"infra/data/set{i}  latest")
        i += 1
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    text = make_file(args.lines)
    iid = instance_id_from_sha256(hashlib.sha256(b"bench").digest())

    def resolver(package: str, version: str) -> Pin:
        return Pin(package, iid)

    # First use in a fresh process: import lark, build (or load cached) parser, parse.
    cold = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys,time; sys.path.insert(0, sys.argv[1]); t=time.perf_counter();"
            "from caproni_tasks.ensure import parse; parse('a/b latest\\n');"
            "print(time.perf_counter()-t)",
            str(Path(__file__).resolve().parent.parent),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    parse("warm/up latest\n")

    parse_times: list[float] = []
    resolve_times: list[float] = []
    totals: list[float] = []
    packages = 0
    for _ in range(args.runs):
        start = time.perf_counter()
        parsed = parse(text)
        middle = time.perf_counter()
        resolved = parsed.resolve(resolver)
        end = time.perf_counter()
        parse_times.append(middle - start)
        resolve_times.append(end - middle)
        totals.append(end - start)
        packages = sum(len(p) for p in resolved.packages_by_subdir.values())

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f} ms"

    print(f"file: {args.lines} lines, {len(text)} bytes, {packages} packages resolved")
    print(f"runs: {args.runs} (median)")
    print(f"parse:           {ms(parse_times)}")
    print(f"resolve:         {ms(resolve_times)}")
    print(f"parse + resolve: {ms(totals)}  (min {min(totals) * 1000:.1f} ms, goal <= 150 ms)")
    print(
        f"first parse in a fresh process (import lark, build parser): "
        f"{float(cold.stdout) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
