"""A newcomer's path: a real-world shaped ensure file against `invoke pkg.serve`.

Everything runs as a user would run it: the server is `invoke pkg.serve` in its own
process (stopped by SIGTERM to its pid), packages are published for every verified
platform with `invoke pkg.create` over the CIPD protocol, and the ensure file uses
templates, conditions, sticky subdirs, tags, refs and a versions file. It must resolve,
install, verify and re-resolve as the cipd client would.
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_session import make_project, run_invoke

TOKEN = "publisher-secret"
HOST_OS = {"linux": "linux", "darwin": "mac"}.get(sys.platform, sys.platform)
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower()
)
PLATFORMS = sorted({f"{HOST_OS}-{HOST_ARCH}", "linux-amd64", "mac-arm64"})

ENSURE = """\
# Copyright 2026 The Example Authors. All rights reserved.
# Tools for the build, pinned for every platform CI runs on.

$ServiceURL {url}
$VerifiedPlatform {platforms}
$ResolvedVersions tools.versions

@Subdir bin
infra/tools/luci/vpython/${{platform}} git_revision:4a5d1c0
infra/3pp/tools/ninja/${{platform}} version:2@1.11.1

# Linux-only helper.
infra/tools/linux-helper/${{os=linux}}-${{arch}} latest

@Subdir clang
fuchsia/third_party/clang/${{platform}} latest
"""


def _invoke(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_invoke(project, env, *args, timeout=120)


@pytest.fixture
def server(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[str]:
    """`invoke pkg.serve` on a free port; yields its URL; SIGTERM to its pid at the end."""
    serving = make_project(tmp_path / "serving")
    env = {**subprocess_env, "PUBLISH_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "pkg.serve", "--repo", str(tmp_path / "repo"),
         "--port", "0", "--write-token-env", "PUBLISH_TOKEN"],
        cwd=serving, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    url = ""
    output = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not url and time.monotonic() < deadline and proc.poll() is None:
            if selector.select(timeout=0.5):
                output += os.read(fd, 65536)
                for line in output.decode(errors="replace").splitlines():
                    if line.startswith("$ServiceURL "):
                        url = line.split()[1]
    seen = [output.decode(errors="replace")]
    try:
        assert url, f"pkg.serve did not announce its URL: {''.join(seen)}"
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()


def _publish(
    project: Path,
    env: dict[str, str],
    url: str,
    name: str,
    content: str,
    *flags: str,
) -> str:
    src = project / "src" / name.replace("/", "_") / content.replace(" ", "_")
    src.mkdir(parents=True)
    tool = src / name.split("/")[-2]  # vpython, ninja, linux-helper, clang
    tool.write_text(f"#!/bin/sh\necho {content}\n")
    tool.chmod(0o755)
    done = _invoke(
        project, env, "pkg.create", "--in", str(src), "--name", name, "--repo", url, *flags
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_real_world_file_resolves_installs_verifies_and_re_resolves(
    server: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    project = make_project(tmp_path / "project")
    # The same service URL the ensure file names, marked as a CIPD service.
    (project / "invoke.yaml").write_text(f"caproni:\n  cipd_services: [{server}]\n")
    env = {**subprocess_env, "INVOKE_CAPRONI_AUTH_TOKEN": TOKEN}
    ids: dict[str, str] = {}
    for plat in PLATFORMS:
        ids[f"vpython {plat}"] = _publish(
            project, env, server, f"infra/tools/luci/vpython/{plat}", f"vpython {plat}",
            "--tag", "git_revision:4a5d1c0",
        )  # fmt: skip
        ids[f"ninja {plat}"] = _publish(
            project, env, server, f"infra/3pp/tools/ninja/{plat}", f"ninja {plat}",
            "--tag", "version:2@1.11.1",
        )  # fmt: skip
        ids[f"clang {plat}"] = _publish(
            project, env, server, f"fuchsia/third_party/clang/{plat}", f"clang 17 {plat}",
            "--ref", "latest",
        )  # fmt: skip
        if plat.startswith("linux-"):
            ids[f"helper {plat}"] = _publish(
                project, env, server, f"infra/tools/linux-helper/{plat}", f"helper {plat}",
                "--ref", "latest",
            )  # fmt: skip

    host = f"{HOST_OS}-{HOST_ARCH}"
    (project / "tools.ensure").write_text(ENSURE.format(url=server, platforms=" ".join(PLATFORMS)))
    reader_env = dict(subprocess_env)  # installing needs no credentials

    resolved = _invoke(project, reader_env, "ensure.resolve")
    assert resolved.returncode == 0, resolved.stderr
    versions = (project / "tools.versions").read_text()
    for key, iid in ids.items():
        assert iid in versions, key

    installed = _invoke(project, reader_env, "ensure", "--json", "result.json")
    assert installed.returncode == 0, installed.stderr
    root = project / ".tools"
    assert sorted(os.listdir(root / "bin")) == sorted(
        ["vpython", "ninja", *(["linux-helper"] if HOST_OS == "linux" else [])]
    )
    result = json.loads((project / "result.json").read_text())["result"]
    pinned = {(subdir, pin["package"]): pin["instance_id"] for subdir, pins in result.items()
              for pin in pins}  # fmt: skip
    assert pinned[("clang", f"fuchsia/third_party/clang/{host}")] == ids[f"clang {host}"]
    assert pinned[("bin", f"infra/3pp/tools/ninja/{host}")] == ids[f"ninja {host}"]
    assert _invoke(project, reader_env, "ensure.verify").returncode == 0
    # Spoken to with the CIPD protocol: resolved tags are remembered per service.
    assert list(Path(subprocess_env["XDG_CACHE_HOME"]).rglob("@tags")), "no tag cache"

    # A new clang goes out under `latest`: verify notices, resolve moves the pin, ensure
    # installs it.
    newer = _publish(
        project, env, server, f"fuchsia/third_party/clang/{host}", "clang 18", "--ref", "latest"
    )
    stale = _invoke(project, reader_env, "ensure.verify")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert _invoke(project, reader_env, "ensure.resolve").returncode == 0
    assert newer in (project / "tools.versions").read_text()
    updated = _invoke(project, reader_env, "ensure")
    assert updated.returncode == 0 and "updated 1" in updated.stdout, updated.stdout
    assert "clang 18" in (root / "clang/clang").read_text()
