"""The ``skaffold`` kind against a stand-in ``skaffold`` (tests/standins/skaffold) that
honours the real command line: settings, the dev command, status, validate, and
``invoke run`` stopped with real signals (SIGINT/SIGTERM by pid, SIGKILL then clean)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_processes import pid_alive, wait_until
from helpers_session import InvokeSession, make_project

from caproni_tasks.config import load_text
from caproni_tasks.config.model import CaproniConfig
from caproni_tasks.diagnostics import Severity, has_errors
from caproni_tasks.reloader import State, new_manager
from caproni_tasks.reloader.kinds.skaffold import SkaffoldSettings, check_skaffold_file, dev_argv

pytestmark = [pytest.mark.timeout(120)]

STANDIN = Path(__file__).resolve().parent / "standins" / "skaffold"

SKAFFOLD_YAML = """\
apiVersion: skaffold/v4beta14
kind: Config
metadata:
  name: app
build:
  artifacts:
    - image: app
manifests:
  rawYaml: [k8s/*.yaml]
profiles:
  - name: dev
  - name: fast
"""


def config_text(section: str = "", repository: bool = True) -> str:
    body = textwrap.indent(textwrap.dedent(section), "      ") if section else ""
    head = "version: 2\nrepositories:\n  app: {directory: repo}\n" if repository else "version: 2\n"
    return (
        head
        + "reloaders:\n  deploy:\n    type: skaffold\n"
        + ("    repository: app\n" if repository else "")
        + "    skaffold:\n"
        + (body or "      {}\n")
    )


def load(project: Path, section: str = "") -> CaproniConfig:
    result = load_text(project / "caproni.yaml", config_text(section))
    assert result.config is not None, result.diagnostics
    return result.config


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin directory holding the stand-in, first on PATH (as the ensure root's bin/)."""
    bin_dir = tmp_path / "tools" / "bin"
    bin_dir.mkdir(parents=True)
    target = bin_dir / "skaffold"
    text = STANDIN.read_text().replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1)
    target.write_text(text)
    target.chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]))
    return bin_dir


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "repo").mkdir(parents=True)
    (project / "repo" / "skaffold.yaml").write_text(SKAFFOLD_YAML)
    return project


# -- settings and the command line ---------------------------------------------------------


def test_defaults_and_the_dev_command(project: Path) -> None:
    settings = load(project).reloaders["deploy"].settings
    assert settings == SkaffoldSettings()
    assert dev_argv(SkaffoldSettings()) == [
        "skaffold",
        "dev",
        "-f",
        "skaffold.yaml",
        "--port-forward=user",
        "--cleanup=true",
        "--status-check=true",
        "--tail=true",
    ]


def test_every_setting_reaches_the_command_line(project: Path) -> None:
    config = load(
        project,
        """\
        file: deploy/skaffold.yaml
        profiles: [dev, -fast]
        modules: [app]
        kube_context: kind-dev
        namespace: web
        port_forward: user,services
        cleanup: false
        status_check: no
        trigger: polling
        env: {SKAFFOLD_DEFAULT_REPO: "${runtimevar:REPO}"}
        args: [--skip-tests, "-v=info"]
        stop_timeout: 2m
        """.replace("${runtimevar:REPO}", "$${runtimevar:REPO}"),
    )
    settings = config.reloaders["deploy"].settings
    assert isinstance(settings, SkaffoldSettings)
    assert settings.stop_timeout == 120.0
    assert dev_argv(settings) == [
        *("skaffold", "dev", "-f", "deploy/skaffold.yaml", "-p", "dev", "-p", "-fast"),
        *("-m", "app", "--kube-context", "kind-dev", "-n", "web"),
        *("--port-forward=user,services", "--cleanup=false", "--status-check=false"),
        *("--tail=true", "--trigger=polling", "--skip-tests", "-v=info"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("port_forward: sideways", "user, services, debug, pods"),
        ("port_forward: off,user", "user, services, debug, pods"),
        ("trigger: sometimes", "one of notify, polling, manual"),
        ("cleanup: maybe", "true or false"),
        ("stop_timeout: soon", "duration"),
        ("profile: [dev]", "unknown key 'profile' (did you mean 'profiles'?)"),
    ],
)
def test_settings_are_checked_where_written(project: Path, line: str, expected: str) -> None:
    result = load_text(project / "caproni.yaml", config_text(line + "\n"))
    assert has_errors(result.diagnostics)
    error = next(d for d in result.diagnostics if d.severity is Severity.ERROR)
    assert expected in error.message
    assert error.line == 9  # the line of the setting


def test_the_json_schema_knows_the_section() -> None:
    from caproni_tasks.config.jsonschema import json_schema

    reloader = json_schema()["properties"]["reloaders"]["additionalProperties"]
    section = reloader["properties"]["skaffold"]
    assert section["properties"]["port_forward"]["default"] == "user"
    assert section["properties"]["stop_timeout"]["default"] == 60


# -- validate ----------------------------------------------------------------------------------


def validate(config: CaproniConfig) -> list[tuple[Severity, str, str]]:
    found = new_manager("skaffold").validate(config.reloaders["deploy"], config)
    return [(d.severity, d.code, d.message) for d in found]


def test_a_good_file_validates(project: Path) -> None:
    assert validate(load(project, "profiles: [dev]\nmodules: [app]\n")) == []


def test_nothing_is_checked_in_a_repository_not_cloned(project: Path) -> None:
    shutil.rmtree(project / "repo")
    assert validate(load(project, "profiles: [nope]\n")) == []


def test_missing_file_unknown_profile_and_module(project: Path) -> None:
    assert [c for _, c, _ in validate(load(project, "file: other.yaml\n"))] == ["skaffold-file"]
    found = validate(load(project, "profiles: [dev, prod]\nmodules: [api]\n"))
    assert [(s, c) for s, c, _ in found] == [
        (Severity.ERROR, "skaffold-profile"),
        (Severity.ERROR, "skaffold-module"),
    ]
    assert "profile 'prod' is not in" in found[0][2] and "(dev, fast)" in found[0][2]
    assert "module 'api'" in found[1][2] and "(app)" in found[1][2]


def test_profiles_from_required_configs_are_only_a_warning(project: Path) -> None:
    (project / "repo" / "skaffold.yaml").write_text(
        SKAFFOLD_YAML + "requires:\n  - path: ../base\n"
    )
    found = validate(load(project, "profiles: [elsewhere]\n"))
    assert [(s, c) for s, c, _ in found] == [(Severity.WARNING, "skaffold-profile")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: v1\nkind: Config\n", "apiVersion must be skaffold/v"),
        ("apiVersion: skaffold/v4beta14\nkind: Deployment\n", "kind must be Config"),
        ("apiVersion: skaffold/v4beta14\nkind: Config\nbuild: [\n", "is not valid YAML"),
        (
            "apiVersion: skaffold/v4beta14\nkind: Config\nbuild:\n  artifacts: 5\n",
            "build.artifacts: 5 is not of type 'array'",
        ),
        (
            "apiVersion: skaffold/v4beta14\nkind: Config\nbuilds: {}\n",
            "'builds' was unexpected",
        ),
    ],
)
def test_file_problems(tmp_path: Path, text: str, expected: str) -> None:
    file = tmp_path / "skaffold.yaml"
    file.write_text(text)
    problems = check_skaffold_file(file, SkaffoldSettings())
    assert any(expected in message for _, _, message in problems), problems


def test_older_versions_are_not_held_to_the_newest_schema(tmp_path: Path) -> None:
    file = tmp_path / "skaffold.yaml"
    file.write_text("apiVersion: skaffold/v2beta29\nkind: Config\nbuilds: {}\n")
    assert check_skaffold_file(file, SkaffoldSettings()) == []


def test_several_documents_are_modules(tmp_path: Path) -> None:
    file = tmp_path / "skaffold.yaml"
    file.write_text(
        "apiVersion: skaffold/v4beta14\nkind: Config\nmetadata: {name: a}\n---\n"
        "apiVersion: skaffold/v4beta14\nkind: Config\nmetadata: {name: b}\n"
    )
    assert check_skaffold_file(file, SkaffoldSettings(modules=("a", "b"))) == []


# -- status ----------------------------------------------------------------------------------


def status(config: CaproniConfig) -> tuple[State, str]:
    found = new_manager("skaffold").status(config.reloaders["deploy"], config)
    return found.state, found.message


def test_status_ready_with_skaffold_and_a_good_file(project: Path, tools: Path) -> None:
    assert status(load(project, "profiles: [dev]\n")) == (State.READY, "")


def test_status_failed_with_the_first_error_line_of_diagnose(project: Path, tools: Path) -> None:
    state, message = status(load(project, "profiles: [prod]\n"))
    assert state is State.FAILED
    expected = 'creating runner: profile selection: profile "prod" not found'
    assert message == f"skaffold diagnose: {expected}"


def test_status_not_ready_without_skaffold_says_how_to_pin_it(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    state, message = status(load(project))
    assert state is State.NOT_READY
    assert "skaffold not found on PATH" in message and "ensure file" in message


def test_status_not_ready_when_not_cloned_or_file_missing(project: Path, tools: Path) -> None:
    assert status(load(project, "file: nope.yaml\n"))[0] is State.NOT_READY
    shutil.rmtree(project / "repo")
    state, message = status(load(project))
    assert state is State.NOT_READY and "repository app not cloned" in message


# -- invoke run ----------------------------------------------------------------------------------


class Run(InvokeSession):
    def __init__(self, project: Path, env: dict[str, str]) -> None:
        super().__init__(project, env)
        self.events_file = project / "skaffold-events.jsonl"
        self.env["SKAFFOLD_STANDIN_LOG"] = str(self.events_file)

    def write(self, section: str = "") -> None:
        (self.root / "caproni.yaml").write_text(config_text(section))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.events_file.exists():
            return []
        found = [json.loads(line) for line in self.events_file.read_text().splitlines()]
        return [e for e in found if kind is None or e["event"] == kind]


@pytest.fixture
def run(project: Path, tools: Path, subprocess_env: dict[str, str]) -> Iterator[Run]:
    make_project(project)
    env = dict(subprocess_env)
    env["PATH"] = os.pathsep.join(
        [str(tools), str(Path(sys.executable).parent), "/usr/bin", "/bin"]
    )
    running = Run(project, env)
    try:
        yield running
    finally:
        running.kill()
        for event in running.events("start"):
            if pid_alive(event["pid"]):
                os.kill(event["pid"], signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_skaffold_with_sigint_and_lets_it_clean_up(run: Run, signum: int) -> None:
    run.write("profiles: [dev]\nnamespace: web\n")
    proc = run.start()
    started = wait_until(lambda: run.events("start"), 30)[0]
    assert started["argv"] == [
        *("dev", "-f", "skaffold.yaml", "-p", "dev", "-n", "web", "--port-forward=user"),
        *("--cleanup=true", "--status-check=true", "--tail=true"),
    ]
    assert started["cwd"] == str(run.root / "repo")
    wait_until(lambda: "Watching for changes..." in run.output, 30)
    proc.send_signal(signum)
    assert proc.wait(60) == 0, run.output
    assert [e["signal"] for e in run.events("signal")] == ["SIGINT"]
    assert len(run.events("cleanup")) == 1
    assert run.events("exit")[-1]["code"] == 0
    assert not pid_alive(started["pid"])
    assert "skaffold | Cleaning up..." in run.output


def test_a_usage_error_fails_at_once_without_restarts(run: Run) -> None:
    run.write("args: [--no-such-flag]\n")
    proc = run.start()
    assert proc.wait(60) == 1, run.output
    assert len(run.events("exit")) == 1 and run.events("exit")[0]["code"] == 127
    assert "exit 127" in run.output and "restarting would not help" in run.output
    assert "restarting in" not in run.output


def test_skaffold_ignoring_sigint_is_terminated_after_stop_timeout(run: Run) -> None:
    run.env["SKAFFOLD_STANDIN_IGNORE_INT"] = "1"
    run.write("stop_timeout: 1\n")
    proc = run.start()
    wait_until(lambda: "Watching for changes..." in run.output, 30)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, run.output
    assert [e["signal"] for e in run.events("signal")] == ["SIGINT", "SIGTERM"]
    assert "did not stop within 1s of SIGINT; terminating" in run.output


def test_sigkill_of_the_supervisor_then_clean_stops_skaffold(run: Run) -> None:
    run.write()
    proc = run.start()
    started = wait_until(lambda: run.events("start"), 30)[0]
    wait_until(lambda: "Watching for changes..." in run.output, 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert pid_alive(started["pid"])  # left behind, as after a crash
    cleaned = run.invoke("clean")
    assert cleaned.returncode == 0, cleaned.stderr
    wait_until(lambda: not pid_alive(started["pid"]), 30)
    assert run.events("signal"), "skaffold was killed without a chance to clean up"
    assert len(run.events("cleanup")) == 1


def test_run_without_skaffold_says_how_to_pin_it(run: Run) -> None:
    run.write()
    run.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    result = run.invoke("run")
    assert result.returncode == 1
    assert "skaffold not found on PATH" in result.stdout + result.stderr
    assert "ensure file" in result.stdout + result.stderr
