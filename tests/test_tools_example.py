"""examples/tools: the README walkthrough, run as a user would in a copy of the example."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from caproni_tasks.ensure.template import host_arch, host_os

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tools"
GENERATED = (".repo", ".tools", "tools.versions", "__pycache__")


def test_walkthrough(tmp_path: Path, invoke_cmd: list[str], subprocess_env: dict[str, str]) -> None:
    project = tmp_path / "tools"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(*GENERATED))

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(argv),
            cwd=project,
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
        return done

    published = run(*invoke_cmd, "publish").stdout
    assert len(published.split()) == 8  # one instance ID per package
    assert run(*invoke_cmd, "publish").stdout == published  # deterministic, re-runnable

    assert "8 entries for linux-amd64, linux-arm64, mac-amd64, mac-arm64" in (
        run(*invoke_cmd, "ensure.resolve").stdout
    )
    assert "installed 4" in run(*invoke_cmd, "ensure").stdout
    assert "everything is up to date" in run(*invoke_cmd, "ensure").stdout
    assert "tools.versions is up to date" in run(*invoke_cmd, "ensure.verify").stdout
    run(*invoke_cmd, "lint")

    platform = f"{host_os()}-{host_arch()}"
    tools = project / ".tools"
    assert run(str(tools / "bin/hello")).stdout == "hello from tools/hello 1.0\n"
    assert platform in run(str(tools / "bin/greet")).stdout
    assert (tools / "bin/sandbox").exists() == (host_os() == "linux")
    assert (tools / "share/doc/tools.md").is_file()

    (tools / "bin/hello").unlink()  # $ParanoidMode CheckPresence brings it back
    assert "repaired 1" in run(*invoke_cmd, "ensure").stdout
    assert (tools / "bin/hello").is_file()
