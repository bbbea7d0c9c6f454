"""examples/caproni-project as a user runs it: what it runs and skips, `invoke validate`,
and `invoke run --only web` (its mirror reloader) against the stand-in cluster, stopped
with a real SIGINT by pid, the cluster restored afterwards."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_cluster import ClusterSession, deployment, mirrord_calls
from helpers_processes import pid_alive, wait_until

from caproni_tasks.config import load_config
from caproni_tasks.diagnostics import Severity
from caproni_tasks.reloader.selection import select

pytestmark = [pytest.mark.timeout(120)]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "caproni-project"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "caproni-project"
    shutil.copytree(EXAMPLE, root)
    return root


def _errors(result: Any) -> list[str]:
    return [str(d) for d in result.diagnostics if d.severity is Severity.ERROR]


def test_the_overlay_selects_the_fragment_and_the_mirror_reloader(project: Path) -> None:
    result = load_config(project / "caproni.yaml")
    config = result.config
    assert config is not None, _errors(result)
    kinds = {name: spec.type for name, spec in config.reloaders.items()}
    assert kinds == {"docs": "process", "web": "mirror", "deploy": "skaffold", "app": "process"}
    selection = select(config)
    assert [r.name for r in selection.run] == ["docs", "web", "deploy", "app"]
    assert selection.skipped == ()
    web = config.reloaders["web"]
    assert web.edit_mode and web.directory == project / "repos/app"

    # Without the personal overlay: the fragment is not merged (no `app`), and the
    # mirror reloader is skipped; process and skaffold reloaders still run.
    (project / "caproni.local.yaml").unlink()
    result = load_config(project / "caproni.yaml")
    plain = result.config
    assert plain is not None, _errors(result)
    selection = select(plain)
    assert [r.name for r in selection.run] == ["docs", "deploy"]
    assert [r.name for r in selection.skipped] == ["web"]
    assert [r.name for r in select(plain, ["web"]).run] == ["web"]


@pytest.fixture
def session(
    project: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> Iterator[ClusterSession]:
    made = ClusterSession(project, subprocess_env, tmp_path, log=tmp_path / "run.log")
    made.env.pop("CAPRONI_EXAMPLE_GREETING", None)
    made.cluster.add(deployment("webservice", "example", replicas=2))
    try:
        yield made
    finally:
        made.end()


def test_validate_passes_with_the_tools_on_path(session: ClusterSession) -> None:
    result = session.invoke("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout


def _serving(session: ClusterSession) -> bool:
    out = session.output
    return (
        session.running()
        and "hello, server of caproni-example" in out
        and "assets of caproni-example" in out
    )


def test_run_only_the_mirror_reloader_against_the_standin_cluster(session: ClusterSession) -> None:
    proc = session.start("--only", "web")
    wait_until(lambda: _serving(session), 60)
    out = session.output
    # The project's hooks and the fragment's (the app repository is in edit mode) ran,
    # then the mirror reloader's own; only `web` runs.
    assert "project ready" in out and "starting app" in out
    assert f"mirroring deployment webservice from {session.root / 'repos/app'}" in out
    assert "docs for" not in out and "from caproni-example" not in out

    cluster = session.cluster
    assert cluster.replicas("webservice", "example") == 0
    copy = cluster.get("webservice-caproni", "example")
    assert copy is not None and copy["spec"]["replicas"] == 1
    [call] = mirrord_calls(session.mirrord_log)  # `assets` runs locally, not via mirrord
    assert call["argv"][:5] == [
        "exec",
        "--target",
        "deployment/webservice-caproni/container/web",
        "--target-namespace",
        "example",
    ]
    assert call["config"]["feature"]["fs"]["read_only"] == ["^/etc/(?<rest>.*)"]

    status = session.status()
    [web] = [r for r in status["reloaders"] if r["name"] == "web"]
    assert web["state"] == "ready", web
    pids = {p["name"]: p["pid"] for p in web["processes"]}
    assert set(pids) == {"server", "assets"} and all(pids.values()), web
    assert all(pid_alive(pid) for pid in pids.values())

    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 0, session.output
    assert cluster.replicas("webservice", "example") == 2
    assert cluster.get("webservice-caproni", "example") is None
    assert not any(pid_alive(pid) for pid in pids.values())
    assert "nothing to clean" in session.invoke("clean").stdout
