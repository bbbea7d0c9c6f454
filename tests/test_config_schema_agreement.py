"""The JSON Schema (what editors check) and the loader agree on every value we feed
them: each example file, and edge values of every scalar kind, as an editor reads them
(YAML 1.2 types) and as the loader reads them (text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from caproni_tasks.config import load_text
from caproni_tasks.config.jsonschema import json_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(
    p for p in (REPO_ROOT / "examples").rglob("caproni.yaml") if "node_modules" not in p.parts
)


def schema_accepts(instance: Any) -> bool:
    validator = jsonschema.Draft202012Validator(json_schema())
    return not list(validator.iter_errors(instance))


def yaml12(text: str) -> Any:
    """What an editor (yaml-language-server, YAML 1.2 core schema) reads."""
    from strictyaml.ruamel.main import YAML

    return json.loads(json.dumps(YAML(typ="safe", pure=True).load(text)))


def loader_accepts(text: str, tmp_path: Path) -> bool:
    result = load_text(tmp_path / "caproni.yaml", text, cache=False)
    return result.config is not None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_example_is_valid_for_both(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    assert schema_accepts(yaml12(text))
    result = load_text(path, text, cache=False)
    assert result.config is not None, [str(d) for d in result.diagnostics]


PROCESS = "reloaders: {a: {type: process, process: {processes: {p: %s}}}}"

EDGES: list[tuple[str, str]] = [
    # (YAML text of the whole file, what it exercises)
    *((f"version: {v}", "version") for v in ("2", '"2"', "'2'", "3", '"3"', "2.5", "two")),
    *(
        ("version: 2\n" + PROCESS % (f"{{command: x, ready: {{tcp: {v}}}}}"), "port")
        for v in (
            "8181",
            '"8181"',
            '"08181"',
            "0",
            '"0"',
            "65535",
            "65536",
            '"65536"',
            '"-1"',
            "-1",
            '"+80"',
            '"abc"',
            "true",
        )
    ),
    *(
        ("version: 2\n" + PROCESS % (f"{{command: x, max_restarts: {v}}}"), "count")
        for v in ("0", '"0"', '"-0"', "-1", '"-1"', '"99999999"', '"1.5"', "1.5")
    ),
    *(
        (f"version: 2\nrepositories: {{r: {{edit_mode: {v}}}}}", "boolean")
        for v in (
            "true",
            "false",
            "True",
            "FALSE",
            "yes",
            "No",
            "on",
            "OFF",
            '"true"',
            "maybe",
            "1",
            "0",
        )
    ),
    *(
        ("version: 2\n" + PROCESS % (f"{{command: x, stop_timeout: {v}}}"), "duration")
        for v in (
            "10",
            '"10"',
            "2.5",
            '"2.5"',
            "1m30s",
            "500ms",
            '"-1"',
            "-1",
            "1e3",
            '"1e3"',
            '"10 s"',
            "abc",
            '"1_0"',
            '".5"',
        )
    ),
    *(
        ("version: 2\n" + PROCESS % (f"{{command: {v}}}"), "text")
        for v in ("x", "123", "true", '""', '" "', "1.5")
    ),
    *(
        ("version: 2\n" + PROCESS % (f"{{command: x, restart: {v}}}"), "choice")
        for v in ("always", "never", "on-failure", "sometimes", "yes")
    ),
    *(
        ("version: 2\n" + PROCESS % (f"{{command: x, stop_signal: {v}}}"), "signal")
        for v in ("TERM", "SIGINT", "hup", "sigquit", "NOPE")
    ),
    *(
        ("version: 2\n" + PROCESS % (f"{{command: x, env_file: {v}}}"), "env_file")
        for v in ("a.env", "[a.env]", "[a.env, b.env]", "[]", '""', "[a.env, '']", "{a: b}", "1")
    ),
    *(
        (f"version: 2\nreloaders: {{a: {{type: process, env_file: {v}}}}}", "env_file")
        for v in ("a.env", "[a.env, b.env]", "[]", "[[a.env]]", "[a.env, {b: c}]", "''")
    ),
    ("version: 2\nlifecycle_hooks: [{type: edit_mode_start, script: x}]", "hooks"),
    ("version: 2\nlifecycle_hooks: [{type: on_start, script: x}]", "hooks"),
    ("version: 2\nlifecycle_hooks: [{type: edit_mode_prepare}]", "hooks"),
    ("version: 2\nextends: []", "extends"),
    ("version: 2\nextends: x.yaml", "extends"),
    ("version: 2\nruntimevars: {A: 'file://./a.txt'}", "url"),
    ("version: 2\nruntimevars: {A: 123}", "url"),
]


@pytest.mark.parametrize(("text", "what"), EDGES, ids=[f"{w}:{t[-40:]}" for t, w in EDGES])
def test_schema_and_loader_agree_on_edge_values(text: str, what: str, tmp_path: Path) -> None:
    editor = yaml12(text)
    assert schema_accepts(editor) == loader_accepts(text, tmp_path), (what, text, editor)
