"""Caproni projects as real ones are written: per-repository fragments, ``extends``,
shell-style variables, edit mode, lifecycle hooks; the loader and ``invoke run``."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from helpers_session import TASKS_PY, run_invoke

from caproni_tasks.config import load_config
from caproni_tasks.config.shellvars import ShellVarError, expand_shell
from caproni_tasks.diagnostics import Severity
from caproni_tasks.reloader.selection import select

pytestmark = [pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parent.parent


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def errors(result: object) -> list[str]:
    return [
        f"{d.file}:{d.line}:{d.column}: {d.message}"
        for d in result.diagnostics  # type: ignore[attr-defined]
        if d.severity is Severity.ERROR
    ]


MAIN = """\
    version: 2
    repositories:
      app: {directory: repos/app}
    lifecycle_hooks:
      - {type: edit_mode_start, script: "echo main"}
    reloaders:
      local:
        type: process
        process:
          processes:
            one: {command: "echo one"}
    """

FRAGMENT = """\
    lifecycle_hooks:
      - {type: edit_mode_prepare, script: "echo prep"}
    reloaders:
      api:
        type: process
        repository: app
        process:
          processes:
            serve: {command: "echo serve"}
      web:
        type: mirror
        repository: app
        mirror:
          target: {namespace: default, kubernetes_type: deployment, name: web}
    """


# -- shell-style variables ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "a"),
        ("${UNSET}", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${A:-d}", "a"),
        ("${UNSET:-${A}x}", "ax"),
        ("${A:+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("$$A $${A} $A", "$A ${A} $A"),
        ("${A:?never}", "a"),
        ("x${UNSET:-${B:-${A}}}y", "xay"),
    ],
)
def test_expand_shell(text: str, expected: str) -> None:
    assert expand_shell(text, {"A": "a", "EMPTY": ""}) == expected


def test_expand_shell_errors() -> None:
    with pytest.raises(ShellVarError, match="B is not set: set A or B") as caught:
        expand_shell("pre ${A:-${B:?set A or B}}", {})
    assert caught.value.offset == 9
    with pytest.raises(ShellVarError, match="unterminated"):
        expand_shell("${A:-x", {})
    with pytest.raises(ShellVarError, match="unsupported"):
        expand_shell("${runtimevar:X}", {})


def test_variables_read_the_environment_and_commands_fall_back_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_HOST", "db.local")
    monkeypatch.setenv("CT_ONLY_ENV", "from-env")
    write(
        tmp_path,
        {
            "caproni.yaml": """\
                version: 2
                variables:
                  HOST: ${CT_HOST:-localhost}
                  PORT: ${CT_PORT:-5432}
                  COST: "$$5"
                reloaders:
                  a:
                    type: process
                    process:
                      processes:
                        p: {command: "echo ${HOST}:${PORT} ${COST} ${CT_ONLY_ENV}"}
                """
        },
    )
    result = load_config(tmp_path / "caproni.yaml")
    assert result.config is not None, errors(result)
    assert result.config.variables["HOST"] == "db.local"
    assert result.config.variables["PORT"] == "5432"
    process = result.config.reloaders["a"].settings.processes[0]  # type: ignore[attr-defined]
    assert process.render({})[0] == "echo db.local:5432 $5 from-env"
    # The cache notices a changed environment.
    monkeypatch.setenv("CT_HOST", "other")
    again = load_config(tmp_path / "caproni.yaml")
    assert again.config is not None and again.config.variables["HOST"] == "other"


def test_required_variable_is_an_error_at_its_location(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "caproni.yaml": """\
                version: 2
                variables:
                  TOKEN: "${CT_SURELY_UNSET:?export CT_SURELY_UNSET first}"
                """
        },
    )
    result = load_config(tmp_path / "caproni.yaml")
    assert errors(result) == [
        f"{tmp_path / 'caproni.yaml'}:3:10: variable TOKEN: CT_SURELY_UNSET is not set: "
        "export CT_SURELY_UNSET first"
    ]


# -- fragments, extends, overlay ---------------------------------------------------------


def test_fragment_merged_only_in_edit_mode_and_overlay_applies_last(tmp_path: Path) -> None:
    write(tmp_path, {"caproni.yaml": MAIN, "repos/app/caproni-project.yaml": FRAGMENT})
    plain = load_config(tmp_path / "caproni.yaml")
    assert plain.config is not None, errors(plain)
    assert list(plain.config.reloaders) == ["local"]

    write(tmp_path, {"caproni.local.yaml": "repositories:\n  app: {edit_mode: true}\n"})
    merged = load_config(tmp_path / "caproni.yaml")
    config = merged.config
    assert config is not None, errors(merged)
    assert list(config.reloaders) == ["local", "api", "web"]
    assert config.reloaders["api"].directory == tmp_path / "repos/app"
    assert [(h.script, h.directory) for h in config.lifecycle_hooks] == [
        ("echo main", tmp_path),
        ("echo prep", tmp_path / "repos/app"),
    ]
    assert config.files == (
        tmp_path / "caproni.yaml",
        tmp_path / "repos/app/caproni-project.yaml",
        tmp_path / "caproni.local.yaml",
    )
    assert [r.name for r in select(config).run] == ["local", "api"]
    assert [r.name for r in select(config).skipped] == ["web"]
    assert [r.name for r in select(config, ["web"]).run] == ["web"]

    # The overlay switches on a reloader the fragment defines.
    write(
        tmp_path,
        {
            "caproni.local.yaml": "repositories:\n  app: {edit_mode: true}\n"
            "reloaders:\n  web: {edit_mode: true}\n"
        },
    )
    enabled = load_config(tmp_path / "caproni.yaml").config
    assert enabled is not None and enabled.reloaders["web"].edit_mode
    assert [r.name for r in select(enabled).run] == ["local", "api", "web"]


def test_overlay_switching_on_a_reloader_of_an_unmerged_fragment_says_how_to_merge_it(
    tmp_path: Path,
) -> None:
    """GitLab's fragment tells its users to add `reloaders.web.edit_mode: true`; without
    the repository in edit mode the fragment is not merged, and the overlay's entry is
    all there is of `web`: say so, not "missing required key type"."""
    write(
        tmp_path,
        {
            "caproni.yaml": MAIN,
            "repos/app/caproni-project.yaml": FRAGMENT,
            "caproni.local.yaml": "reloaders:\n  web: {edit_mode: true}\n",
        },
    )
    result = load_config(tmp_path / "caproni.yaml")
    assert result.config is None
    overlay = tmp_path / "caproni.local.yaml"
    fragment = tmp_path / "repos/app/caproni-project.yaml"
    assert errors(result) == [
        f"{overlay}:2:3: reloader 'web' comes from {fragment}, which is merged only when "
        "`repositories.app.edit_mode: true`; add this line to "
        f"{overlay}: repositories: {{app: {{edit_mode: true}}}}"
    ]
    assert [d.code for d in result.diagnostics if d.severity is Severity.ERROR] == [
        "fragment-not-merged"
    ]

    # The line it gives works.
    write(
        tmp_path,
        {
            "caproni.local.yaml": "repositories: {app: {edit_mode: true}}\n"
            "reloaders:\n  web: {edit_mode: true}\n"
        },
    )
    fixed = load_config(tmp_path / "caproni.yaml")
    assert fixed.config is not None, errors(fixed)
    assert fixed.config.reloaders["web"].edit_mode

    # A reloader no fragment defines keeps the plain schema error.
    write(tmp_path, {"caproni.local.yaml": "reloaders:\n  nowhere: {edit_mode: true}\n"})
    plain = load_config(tmp_path / "caproni.yaml")
    assert errors(plain) == [f"{overlay}:2:3: missing required key type"]


def test_fragment_mistakes_point_into_the_fragment(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "caproni.yaml": MAIN,
            "caproni.local.yaml": "repositories:\n  app: {edit_mode: true}\n",
            "repos/app/caproni-project.yaml": FRAGMENT.replace("serve: {command", "serve: {comand"),
        },
    )
    result = load_config(tmp_path / "caproni.yaml")
    fragment = tmp_path / "repos/app/caproni-project.yaml"
    assert any(e.startswith(f"{fragment}:9:") and "comand" in e for e in errors(result))


def test_a_changed_fragment_is_not_served_from_the_cache(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "caproni.yaml": MAIN,
            "caproni.local.yaml": "repositories:\n  app: {edit_mode: true}\n",
            "repos/app/caproni-project.yaml": FRAGMENT,
        },
    )
    first = load_config(tmp_path / "caproni.yaml").config
    assert first is not None and "api" in first.reloaders
    write(tmp_path, {"repos/app/caproni-project.yaml": FRAGMENT.replace("api:", "api2:")})
    second = load_config(tmp_path / "caproni.yaml").config
    assert second is not None and "api2" in second.reloaders
    (tmp_path / "repos/app/caproni-project.yaml").unlink()
    third = load_config(tmp_path / "caproni.yaml").config
    assert third is not None and list(third.reloaders) == ["local"]


def test_extends_order_relative_paths_missing_and_cycles(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "caproni.yaml": """\
                version: 2
                extends: [conf/base.yaml]
                variables:
                  WHO: main
                """,
            "conf/base.yaml": "extends: [more.yaml]\nvariables:\n  WHO: base\n  BASE: b\n",
            "conf/more.yaml": "variables:\n  MORE: m\n  BASE: more\n",
            "caproni.local.yaml": "extends: [local-extra.yaml]\n",
            "local-extra.yaml": "variables:\n  EXTRA: x\n",
        },
    )
    result = load_config(tmp_path / "caproni.yaml")
    assert result.config is not None, errors(result)
    assert dict(result.config.variables) == {"MORE": "m", "BASE": "b", "WHO": "main", "EXTRA": "x"}

    write(tmp_path, {"conf/more.yaml": "extends: [../caproni.yaml, gone.yaml]\n"})
    broken = load_config(tmp_path / "caproni.yaml")
    more = tmp_path / "conf/more.yaml"
    found = errors(broken)
    assert f"{more}:1:11: extends cycle: " in found[0] and "-> " in found[0]
    assert found[1] == f"{more}:1:28: extends: no such file {tmp_path / 'conf/gone.yaml'}"


def test_ignored_notice_names_the_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "caproni.yaml": "version: 2\nextends: [cluster.yaml]\n",
            "cluster.yaml": "cluster: {driver: k3d}\ndeployers: {}\n",
        },
    )
    result = load_config(tmp_path / "caproni.yaml")
    notices = [d for d in result.diagnostics if d.severity is Severity.NOTICE]
    assert len(notices) == 1
    assert notices[0].file == str(tmp_path / "cluster.yaml")
    assert f"ignoring 'cluster', 'deployers' in {tmp_path / 'cluster.yaml'}" in notices[0].message


def test_example_project_loads_and_runs_what_edit_mode_selects(tmp_path: Path) -> None:
    project = tmp_path / "caproni-project"
    shutil.copytree(REPO_ROOT / "examples/caproni-project", project)
    result = load_config(project / "caproni.yaml")
    config = result.config
    assert config is not None, errors(result)
    selection = select(config)
    assert [r.name for r in selection.run if r.type == "process"] == ["docs", "app"]
    assert all(r.type != "process" for r in selection.skipped)
    assert all(not r.edit_mode for r in selection.skipped)
    assert [h.directory for h in config.lifecycle_hooks] == [
        project,
        project / "repos/app",
        project / "repos/app",
    ]


# -- invoke validate / run as users run them ------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(
        root,
        {
            "tasks.py": TASKS_PY,
            "caproni.yaml": MAIN,
            "caproni.local.yaml": "repositories:\n  app: {edit_mode: true}\n",
            "repos/app/caproni-project.yaml": FRAGMENT,
        },
    )
    return root


def test_validate_a_fragment_alone(project: Path, subprocess_env: dict[str, str]) -> None:
    fragment = project / "repos/app/caproni-project.yaml"
    fragment.write_text(textwrap.dedent(FRAGMENT.split("      web:")[0]))
    result = run_invoke(project, subprocess_env, "validate", "--config", str(fragment))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{fragment}:6:17: notice: repository 'app' is not defined in" in result.stdout


def test_run_hooks_skipped_listing_and_prepare_digest(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    first = run_invoke(project, subprocess_env, "run")
    out = first.stdout
    assert first.returncode == 0, out + first.stderr
    assert "not running web (mirror): edit mode is off" in out
    assert f"add this line to {project / 'caproni.local.yaml'}" in out
    assert "reloaders: {web: {edit_mode: true}}" in out
    assert "invoke run --only web" in out
    # Hooks before processes, in their directories, output prefixed.
    main = re.search(r"hooks +\| main", out)
    prep = re.search(r"hooks:app +\| prep", out)
    serve = re.search(r"serve +\| serve", out)
    assert main and prep and serve and main.start() < prep.start() < serve.start()
    assert re.search(r"one +\| one", out)

    second = run_invoke(project, subprocess_env, "run")
    assert not re.search(r"hooks:app +\| prep", second.stdout)  # prepare ran once
    assert re.search(r"hooks +\| main", second.stdout)  # start hooks run every time
    forced = run_invoke(project, subprocess_env, "run", "--prepare")
    assert re.search(r"hooks:app +\| prep", forced.stdout)
    fragment = project / "repos/app/caproni-project.yaml"
    fragment.write_text(textwrap.dedent(FRAGMENT).replace("echo prep", "echo prep2"))
    changed = run_invoke(project, subprocess_env, "run")
    assert re.search(r"hooks:app +\| prep2", changed.stdout)  # the hook list changed


def test_a_failing_hook_stops_the_run_with_its_exit_code(
    project: Path, subprocess_env: dict[str, str]
) -> None:
    (project / "caproni.yaml").write_text(
        textwrap.dedent(MAIN).replace('"echo main"', '"echo about to fail; exit 7"')
    )
    result = run_invoke(project, subprocess_env, "run")
    assert result.returncode == 7, result.stdout + result.stderr
    assert re.search(r"hooks +\| about to fail", result.stdout)
    assert "failed with exit code 7" in result.stderr
    assert f"({project / 'caproni.yaml'}:5:5)" in result.stderr
    assert "| one" not in result.stdout  # no process started


def test_run_with_only_edit_mode_reloaders_says_how_to_enable(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    root = tmp_path / "p"
    write(root, {"tasks.py": TASKS_PY, "caproni.yaml": "version: 2\n" + _mirror_only()})
    result = run_invoke(root, subprocess_env, "run")
    assert result.returncode == 1
    assert "no reloaders to run" in result.stderr
    assert "reloaders: {web: {edit_mode: true}}" in result.stderr


def _mirror_only() -> str:
    return (
        "reloaders:\n  web:\n    type: mirror\n    mirror:\n"
        "      target: {namespace: default, kubernetes_type: deployment, name: web}\n"
    )


def test_hook_env_carries_the_session_marker(project: Path, subprocess_env: dict[str, str]) -> None:
    (project / "caproni.yaml").write_text(
        textwrap.dedent(MAIN).replace('"echo main"', '"echo marker=$${CAPRONI_TASKS_SESSION}"')
    )
    env = dict(subprocess_env)
    env.pop("CAPRONI_TASKS_SESSION", None)
    result = run_invoke(project, env, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "marker=" in result.stdout and "marker=\n" not in result.stdout
    assert os.environ.get("CAPRONI_TASKS_SESSION") is None
