"""A pinned ensure file that has not changed is not parsed again (no-op runs stay fast),
and any change to it or to its versions file is seen at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers_packages import publish
from helpers_session import make_project

PROBE = """\
import sys
from invoke.main import program
try:
    program.run(["invoke", *sys.argv[1:]])
except SystemExit as stop:
    code = stop.code
else:
    code = 0
print("PARSER-IMPORTED" if "lark" in sys.modules else "PARSER-NOT-IMPORTED")
sys.exit(code)
"""


def _run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unchanged_pinned_files_are_not_parsed_and_changes_are_seen(
    tmp_path: Path, repo_dir: Path, subprocess_env: dict[str, str]
) -> None:
    project = make_project(tmp_path / "project")
    publish(repo_dir, "t/a", {"a.txt": "a v1"}, refs=["latest"])
    publish(repo_dir, "t/b", {"b.txt": "b"}, refs=["latest"])
    ensure = project / "tools.ensure"
    ensure.write_text(
        f"$ServiceURL {repo_dir.as_uri()}\n$ResolvedVersions tools.versions\n\nt/a latest\n"
    )
    assert _run(project, subprocess_env, "ensure.resolve").returncode == 0

    first = _run(project, subprocess_env, "ensure")
    assert first.returncode == 0 and "installed 1" in first.stdout, first.stderr
    again = _run(project, subprocess_env, "ensure")
    assert "everything is up to date" in again.stdout
    assert "PARSER-NOT-IMPORTED" in again.stdout, "an unchanged pinned file was parsed"

    # A new pin in the versions file is seen at once.
    publish(repo_dir, "t/a", {"a.txt": "a v2"}, refs=["latest"])
    assert _run(project, subprocess_env, "ensure.resolve").returncode == 0
    updated = _run(project, subprocess_env, "ensure")
    assert "updated 1" in updated.stdout, updated.stdout + updated.stderr
    assert (project / ".tools/a.txt").read_text() == "a v2"

    # So is a change to the ensure file itself.
    ensure.write_text(ensure.read_text() + "t/b latest\n")
    assert _run(project, subprocess_env, "ensure.resolve").returncode == 0
    added = _run(project, subprocess_env, "ensure")
    assert "installed 1" in added.stdout and "PARSER-IMPORTED" in added.stdout
    assert (project / ".tools/b.txt").read_text() == "b"

    # An ensure file broken after a recorded run is reported, not served from the record.
    ensure.write_text(ensure.read_text() + "not a valid line at all\n")
    broken = _run(project, subprocess_env, "ensure")
    assert broken.returncode == 1 and "tools.ensure:" in broken.stderr
