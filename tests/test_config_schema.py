"""The JSON Schema for editors: valid, published by `invoke schema`, and in agreement
with the loader on the example configs and on typical mistakes."""

from __future__ import annotations

import io
import json
import textwrap
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from invoke.program import Program
from strictyaml.ruamel import YAML

import caproni_tasks
from caproni_tasks.config import load_text
from caproni_tasks.config.jsonschema import json_schema
from caproni_tasks.diagnostics import has_errors

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(REPO.glob("examples/**/caproni.yaml"))


def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def yaml_data(text: str) -> Any:
    """YAML 1.2 data, as yaml-language-server sees it."""
    return YAML(typ="safe", pure=True).load(text)


def test_examples_exist() -> None:
    assert REPO / "examples" / "caproni-v2" / "caproni.yaml" in EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_configs_satisfy_the_json_schema(path: Path) -> None:
    errors = [e.message for e in validator().iter_errors(yaml_data(path.read_text()))]
    assert errors == []


VALID = """\
version: 2
variables: {PORT: 8080}
runtimevars:
  TOKEN: file://./token.txt
reloaders:
  svc:
    type: process
    process:
      processes:
        web:
          command: serve ${PORT}
          stop_signal: INT
          stop_timeout: 1m30s
          ready: {tcp: 8080}
          env: {DEBUG: true, TOKEN: "${runtimevar:TOKEN}"}
  other:
    type: skaffold
"""

MISTAKES = {
    "version-1": ("version: 2", "version: 1"),
    "restart-enum": ("stop_signal: INT", "restart: sometimes"),
    "unknown-process-key": ("stop_signal: INT", "colour: red"),
    "bad-signal": ("stop_signal: INT", "stop_signal: BOGUS"),
    "bad-duration": ("stop_timeout: 1m30s", "stop_timeout: soon"),
    "port-range": ("ready: {tcp: 8080}", "ready: {tcp: 0}"),
    "two-ready-checks": ("ready: {tcp: 8080}", "ready: {tcp: 8080, log: up}"),
    "kind-mismatch": ("    type: skaffold", "    type: skaffold\n    process: {processes: {}}"),
    "missing-section": ("    type: skaffold", "    type: mirror"),
    "top-level-typo": ("variables:", "variable:"),
    "bad-variable-name": ("{PORT: 8080}", "{1PORT: 8080}"),
    "runtimevar-without-scheme": ("file://./token.txt", "./token.txt"),
    "empty-command": ("command: serve ${PORT}", 'command: ""'),
}


def test_valid_config_passes_both() -> None:
    assert list(validator().iter_errors(yaml_data(VALID))) == []
    result = load_text(Path("/project/caproni.yaml"), VALID)
    assert result.config is not None, result.diagnostics


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_loader_and_json_schema_reject_the_same_mistakes(mistake: str) -> None:
    old, new = MISTAKES[mistake]
    assert old in VALID
    text = VALID.replace(old, new, 1)
    assert list(validator().iter_errors(yaml_data(text))), "JSON Schema accepted it"
    assert has_errors(load_text(Path("/project/caproni.yaml"), text).diagnostics)


def run_invoke(argv: list[str]) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        Program(namespace=caproni_tasks.namespace(), version="test").run(
            ["invoke", *argv], exit=False
        )
    return out.getvalue()


def test_schema_task_prints_the_schema() -> None:
    printed = json.loads(run_invoke(["schema"]))
    assert printed == json_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_task_writes_a_file(tmp_path: Path) -> None:
    target = tmp_path / "caproni.schema.json"
    target.write_text("old")
    message = run_invoke(["schema", "--output", str(target)])
    assert str(target) in message
    assert json.loads(target.read_text()) == json_schema()
    assert [p.name for p in tmp_path.iterdir()] == ["caproni.schema.json"]  # no temp left


@pytest.mark.parametrize("missing", ["nonexistent/dir/x.json", "file/x.json"])
def test_schema_task_refuses_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    target = tmp_path / missing
    program = Program(namespace=caproni_tasks.namespace(), version="test")
    with pytest.raises(SystemExit) as info:
        program.run(["invoke", "schema", "--output", str(target)], exit=True)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    first = tmp_path / missing.split("/")[0]
    assert err.startswith(f"--output {target}: ")
    assert str(first) in err and "Traceback" not in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing created


def test_schema_task_in_a_project(
    tmp_path: Path, invoke_cmd: list[str], subprocess_env: dict[str, str]
) -> None:
    import subprocess

    (tmp_path / "tasks.py").write_text(
        textwrap.dedent(
            """\
            import caproni_tasks
            ns = caproni_tasks.namespace()
            """
        )
    )
    done = subprocess.run(
        [*invoke_cmd, "schema"],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "caproni.yaml"


def test_published_schema_is_current() -> None:
    """docs/caproni.schema.json (referenced by the examples' modelines) must not drift."""
    published = REPO / "docs" / "caproni.schema.json"
    if not published.exists():
        pytest.skip("docs/caproni.schema.json is not published in this checkout")
    assert json.loads(published.read_text()) == json_schema(), (
        "regenerate it: invoke schema --output docs/caproni.schema.json"
    )
