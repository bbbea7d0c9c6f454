"""The mirror kind end to end: `invoke run`/`status`/`clean`/`validate` in a project,
with the kubectl and mirrord stand-ins on PATH and their "cluster" checked afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from helpers_cluster import MIRRORD_SCHEMA, ClusterSession, deployment, mirrord_calls
from helpers_processes import pid_alive, wait_until
from helpers_session import make_project

pytestmark = [pytest.mark.timeout(120)]

CONFIG = """\
version: 2
repositories:
  app:
    directory: app
reloaders:
  web:
    type: mirror
    repository: app
    edit_mode: true
    mirror:
      target: {namespace: gitlab, kubernetes_type: deployment, name: webservice, container: web}
      filesystem:
        mode: localwithoverrides
        read_only: ["^/etc/(?<rest>.*)"]
        mapping: {"^/secret/(?<file>[^/]+)$": "./secrets/${file}"}
      network: {outgoing: {ignore_localhost: true}}
      env: {exclude: "RAILS_ENV"}
      lifecycle_hooks:
        - {type: edit_mode_start, script: "echo hook-ran > hook.txt"}
      edit_mode_processes:
        rails:
          command: echo "rails $MIRRORD_PROGRESS_MODE"; echo $$$$ > rails.pid; exec sleep 300
        vite:
          command: echo "vite $$MIRRORD_RESOLVED_CONFIG"; echo $$$$ > vite.pid; exec sleep 300
          context: local
"""


class Project(ClusterSession):
    def pid(self, name: str) -> int | None:
        path = self.root / "app" / f"{name}.pid"
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text.isdigit() else None


@pytest.fixture
def project(tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[Project]:
    root = make_project(tmp_path / "project", CONFIG)
    (root / "app").mkdir()
    made = Project(root, subprocess_env, tmp_path)
    made.cluster.add(deployment("webservice", "gitlab", replicas=3))
    try:
        yield made
    finally:
        made.end()


def _running(project: Project) -> bool:
    out = project.output
    return (
        project.running() and "rails off" in out and "vite " in out and bool(project.pid("rails"))
    )


def _copy_calls(calls: list[list[str]]) -> list[list[str]]:
    return [c for c in calls if c[:2] != ["get", "deployments"]]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_run_copies_mirrors_and_restores_on_each_stop_signal(project: Project, signum: int) -> None:
    proc = project.start()
    wait_until(lambda: _running(project), 60)
    cluster = project.cluster
    assert cluster.replicas("webservice", "gitlab") == 0
    copy = cluster.get("webservice-caproni", "gitlab")
    assert copy is not None and copy["spec"]["replicas"] == 1
    assert copy["spec"]["selector"]["matchLabels"]["caproni-tasks/copy-of"] == "webservice"
    assert (project.root / "app" / "hook.txt").read_text() == "hook-ran\n"
    # The copy record (original replica count) is on disk while the session runs.
    from caproni_tasks.reloader.kubectl import CopyRecords

    [call] = mirrord_calls(project.mirrord_log)
    argv = call["argv"]
    config_file = argv[argv.index("-f") + 1]
    assert argv == [
        "exec",
        "--target",
        "deployment/webservice-caproni/container/web",
        "--target-namespace",
        "gitlab",
        "-f",
        config_file,
        "--",
        "/bin/sh",
        "-c",
        'echo "rails $MIRRORD_PROGRESS_MODE"; echo $$ > rails.pid; exec sleep 300',
    ]
    assert call["progress_mode"] == "off"
    jsonschema.Draft202012Validator(json.loads(MIRRORD_SCHEMA.read_text())).validate(call["config"])
    assert call["config"]["feature"]["fs"]["read_only"] == ["^/etc/(?<rest>.*)"]
    assert call["config"]["feature"]["network"] == {"outgoing": {"ignore_localhost": True}}
    assert call["config"]["feature"]["env"] == {"exclude": "RAILS_ENV"}
    # mirrord exec'd the command: the pid the supervisor started is the command's.
    rails = project.pid("rails")
    vite = project.pid("vite")
    assert rails and vite and pid_alive(rails) and pid_alive(vite)
    assert "vite \n" in project.output  # local: not under mirrord (no resolved config)
    status = project.status()
    [web] = status["reloaders"]
    assert web["state"] == "ready", web

    os.kill(proc.pid, signum)
    assert proc.wait(60) == 0, project.output
    assert cluster.replicas("webservice", "gitlab") == 3
    assert cluster.get("webservice-caproni", "gitlab") is None
    assert not pid_alive(rails) and not pid_alive(vite)
    assert not Path(config_file).exists()
    assert CopyRecords.load(project.root / "caproni.yaml") is None
    assert _copy_calls(cluster.calls()) == [
        ["get", "deployment", "webservice", "-n", "gitlab", "-o", "json"],
        ["apply", "-f", "-"],
        ["rollout", "status", "deployment/webservice-caproni", "-n", "gitlab", "--timeout=300s"],
        ["scale", "deployment/webservice", "--replicas=0", "-n", "gitlab"],
        ["scale", "deployment/webservice", "--replicas=3", "-n", "gitlab"],
        ["delete", "deployment", "webservice-caproni", "-n", "gitlab", "--ignore-not-found"],
    ]


def test_sigkill_then_clean_restores_the_cluster(project: Project) -> None:
    proc = project.start()
    wait_until(lambda: _running(project), 60)
    rails = project.pid("rails")
    assert project.cluster.replicas("webservice", "gitlab") == 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert project.cluster.get("webservice-caproni", "gitlab") is not None
    [web] = project.status()["reloaders"]
    assert any("invoke clean" in reason for reason in web["reasons"]), web
    cleaned = project.invoke("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "restored deployment/webservice to 3 replicas" in cleaned.stdout
    assert project.cluster.replicas("webservice", "gitlab") == 3
    assert project.cluster.get("webservice-caproni", "gitlab") is None
    assert rails is not None
    wait_until(lambda: not pid_alive(rails), 15)
    again = project.invoke("clean")
    assert again.returncode == 0 and "nothing to clean" in again.stdout
    assert project.cluster.replicas("webservice", "gitlab") == 3


def test_sigkill_then_next_run_repairs_first(project: Project) -> None:
    proc = project.start()
    wait_until(lambda: _running(project), 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    (project.root / "app" / "rails.pid").unlink()
    project.log.unlink()
    second = project.start()
    wait_until(lambda: _running(project), 60)
    assert "restored deployment/webservice to 3 replicas" in project.output
    copy = project.cluster.get("webservice-caproni", "gitlab")
    assert copy is not None
    annotations = copy["metadata"]["annotations"]
    assert annotations["caproni-tasks/original-replicas"] == "3"
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0, project.output
    assert project.cluster.replicas("webservice", "gitlab") == 3
    assert project.cluster.get("webservice-caproni", "gitlab") is None


def test_missing_target_fails_the_run_and_status_says_not_deployed(project: Project) -> None:
    data = project.cluster.load()
    data["contexts"]["dev"]["deployments"] = {}
    project.cluster.save(data)
    [web] = project.status()["reloaders"]
    assert web["state"] == "not-deployed"
    assert "deployment webservice not found in namespace gitlab" in web["reasons"][0]
    proc = project.start()
    assert proc.wait(60) == 1
    assert "target resource not found" in project.output
    assert project.cluster.calls()[-1][:2] == ["get", "deployment"]


def test_status_not_ready_reasons_and_one_query_per_namespace(project: Project) -> None:
    config = CONFIG.replace("    repository: app\n", "    repository: app\n", 1) + (
        "  api:\n    type: mirror\n    mirror:\n"
        "      target: {namespace: gitlab, kubernetes_type: deployment, name: webservice}\n"
        "      edit_mode_processes: {api: {command: sleep 1, port: 9999}}\n"
    )
    (project.root / "caproni.yaml").write_text(config)
    before = len(project.cluster.calls())
    states = {r["name"]: r["state"] for r in project.status()["reloaders"]}
    assert states == {"web": "ready", "api": "ready"}
    lists = [c for c in project.cluster.calls()[before:] if c[:2] == ["get", "deployments"]]
    assert lists == [["get", "deployments", "-n", "gitlab", "-o", "json"]]

    project.cluster.set("reachable", False)
    reloaders = project.status()["reloaders"]
    assert {r["state"] for r in reloaders} == {"not-ready"}
    assert "cluster unreachable" in reloaders[0]["reasons"][0]
    project.cluster.set("reachable", True)

    (project.root / "app").rename(project.root / "elsewhere")
    [web, _] = project.status()["reloaders"]
    assert web["state"] == "not-ready" and "not cloned" in " ".join(web["reasons"])

    bare = dict(project.env, PATH=str(Path(sys.executable).parent))
    shown = subprocess.run(
        [sys.executable, "-m", "invoke", "status", "--json"],
        cwd=project.root,
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
    )
    [web, _] = json.loads(shown.stdout)["reloaders"]
    assert web["state"] == "not-ready"
    assert "kubectl not found on PATH" in web["reasons"][0]
    assert "ensure file" in web["reasons"][0]


def test_validate_reports_mirror_mistakes_at_their_place(project: Project) -> None:
    bad = (
        CONFIG.replace("kubernetes_type: deployment", "kubernetes_type: statefulset")
        .replace("mode: localwithoverrides", "mode: overrides")
        .replace('["^/etc/(?<rest>.*)"]', '["(?=x)"]')
        .replace("{ignore_localhost: true}", "{ignore_localhost: true}, incoming: grab")
        .replace('"./secrets/${file}"', '"./secrets/$1a"')
    )
    (project.root / "caproni.yaml").write_text(bad)
    result = project.invoke("validate", "--format", "json")
    assert result.returncode == 1
    text = result.stdout + result.stderr
    for expected in ("statefulset", "overrides", "look-ahead", "grab"):
        assert expected in text, text
    (project.root / "caproni.yaml").write_text(
        CONFIG.replace('"./secrets/${file}"', '"./secrets/$1a"')
    )
    warned = project.invoke("validate")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "${1}a" in warned.stdout + warned.stderr


def test_edit_mode_off_skips_the_mirror_reloader_unless_named(project: Project) -> None:
    (project.root / "caproni.yaml").write_text(
        CONFIG.replace("edit_mode: true", "edit_mode: false")
    )
    (project.root / "caproni.yaml").write_text(
        (project.root / "caproni.yaml").read_text()
        + "  local:\n    type: process\n    process:\n      processes:\n"
        "        once: {command: echo once-ran, restart: never}\n"
    )
    proc = project.start()
    assert proc.wait(60) == 0, project.output
    assert "once-ran" in project.output
    assert "web" in project.output and "edit_mode" in project.output
    assert project.cluster.replicas("webservice", "gitlab") == 3
    assert project.cluster.calls() == []
