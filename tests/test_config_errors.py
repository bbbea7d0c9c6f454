"""Each schema mistake and each unknown reference: a diagnostic at the right place."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from caproni_tasks.config import LoadResult, load_config
from caproni_tasks.diagnostics import Severity

HEAD = """\
version: 2
variables:
  PORT: "8080"
runtimevars:
  TOKEN: file://./token.txt
repositories:
  app:
    directory: repos/app
reloaders:
"""


def load(tmp_path: Path, reloaders: str, head: str = HEAD) -> LoadResult:
    path = tmp_path / "caproni.yaml"
    path.write_text(head + textwrap.indent(textwrap.dedent(reloaders), "  "))
    return load_config(path, cache=False)


def errors(result: LoadResult) -> list[tuple[int, int, str, str]]:
    return [
        (d.line, d.column, d.code, d.message)
        for d in result.diagnostics
        if d.severity is Severity.ERROR
    ]


# Line numbers count from the first line of HEAD (10 is the first line of the case).
CASES = [
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  restart: sometimes
        """,
        (16, 20, "invalid-value", "expected one of always, on-failure, never; found 'sometimes'"),
        id="restart-enum",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  comand: run
        """,
        (15, 11, "unknown-key", "unknown key 'comand' (did you mean 'command'?)"),
        id="unknown-key",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  directory: src
        """,
        (14, 9, "missing-key", "missing required key command"),
        id="missing-command",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  max_restarts: many
        """,
        (16, 25, "invalid-value", "expected an integer ≥ 0; found 'many'"),
        id="max-restarts-text",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  stop_signal: SIGFOO
        """,
        (16, 24, "invalid-value", "expected a signal name"),
        id="stop-signal",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  stop_timeout: soon
        """,
        (16, 25, "invalid-value", "duration such as 500ms"),
        id="stop-timeout",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  ready:
                    tcp: 70000
        """,
        (17, 18, "invalid-value", "expected an integer from 1 to 65535; found 70000"),
        id="ready-port",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  ready: {http: "localhost:80"}
        """,
        (16, 25, "invalid-value", "expected an http:// or https:// URL"),
        id="ready-url-flow-style",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  ready:
                    log: "([a-z"
        """,
        (17, 18, "invalid-value", "invalid regular expression"),
        id="ready-regex",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  ready:
                    tcp: 80
                    log: up
        """,
        (16, 11, "ready-check", "exactly one of tcp, http, log; found tcp, log"),
        id="ready-two-checks",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  watch: src
        """,
        (16, 18, "wrong-type", "expected a list"),
        id="watch-not-list",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  env:
                    - A=1
        """,
        (17, 13, "wrong-type", "expected a mapping"),
        id="env-list",
    ),
    pytest.param(
        """\
          web:
            type: mirror
            process:
              processes: {}
        """,
        (
            12,
            5,
            "kind-mismatch",
            "a 'process:' section does not belong to a reloader of type 'mirror'",
        ),
        id="section-kind-mismatch",
    ),
    pytest.param(
        """\
          web:
            type: process
        """,
        (11, 11, "missing-section", "needs a 'process:' section"),
        id="missing-section",
    ),
    pytest.param(
        """\
          web:
            type: custom
            custom: {a: 1}
            colour: blue
        """,
        (13, 5, "unknown-key", "unknown key 'colour'"),
        id="third-party-extra-key",
    ),
    pytest.param(
        """\
          web:
            type: skaffold
            skaffold:
              profiles: dev
        """,
        (13, 17, "wrong-type", "expected a list"),
        id="skaffold-profiles",
    ),
    pytest.param(
        """\
          web:
            type: mirror
            mirror:
              target: {namespace: default, name: web}
        """,
        (13, 7, "missing-key", "missing required key kubernetes_type"),
        id="mirror-target",
    ),
    pytest.param(
        """\
          web:
            type: mirror
            mirror:
              target: {namespace: default, kubernetes_type: deployment, name: web}
              edit_mode_processes:
                rails: {command: "bin/rails s", context: remote}
        """,
        (15, 50, "invalid-value", "expected one of mirror, local; found 'remote'"),
        id="mirror-context",
    ),
    pytest.param(
        """\
          web:
            type: process
            repository: nope
            process:
              processes:
                server:
                  command: run
        """,
        (
            12,
            17,
            "unknown-repository",
            "unknown repository 'nope' (defined under repositories: app)",
        ),
        id="unknown-repository",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run --port ${PROT}
        """,
        (
            15,
            31,
            "unknown-variable",
            "unknown variable 'PROT' in ${PROT}: not under variables nor in the environment "
            "(variables: PORT",
        ),
        id="unknown-variable",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  env:
                    SECRET: "token=${runtimevar:TOKN}"
        """,
        (17, 28, "unknown-runtimevar", "unknown runtime variable 'TOKN'"),
        id="unknown-runtimevar-quoted",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: |
                    echo start
                    exec run ${NOPE}
        """,
        (17, 22, "unknown-variable", "unknown variable 'NOPE'"),
        id="unknown-variable-block-scalar",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: echo ${PORT
        """,
        (15, 25, "bad-reference", "unterminated '${'"),
        id="unterminated-reference",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: echo ${env:HOME}
        """,
        (15, 25, "bad-reference", "unknown reference '${env:HOME}'"),
        id="unknown-reference-kind",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  depends_on:
                    - db
        """,
        (17, 15, "unknown-dependency", "depends_on 'db': not a process of reloader 'web'"),
        id="unknown-dependency",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  depends_on: [web.db]
        """,
        (16, 24, "unknown-dependency", "reloader 'web' has no process 'db' (processes: server)"),
        id="unknown-dependency-process",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                server:
                  command: run
                  depends_on: [cluster.db]
        """,
        (16, 24, "unknown-dependency", "no reloader named 'cluster'"),
        id="unknown-dependency-reloader",
    ),
    pytest.param(
        """\
          web:
            type: skaffold
          api:
            type: process
            process:
              processes:
                server:
                  command: run
                  depends_on: [web]
        """,
        (18, 24, "unknown-dependency", "reloader 'web' is of type skaffold"),
        id="dependency-on-non-process-kind",
    ),
    pytest.param(
        """\
          web:
            type: process
            process:
              processes:
                Bad.Name:
                  command: run
        """,
        (14, 9, "invalid-value", "a name of letters, digits, '_' and '-'"),
        id="bad-process-name",
    ),
    pytest.param(
        """\
          web:
            type: process
            edit_mode: maybe
            process:
              processes:
                server:
                  command: run
        """,
        (12, 16, "invalid-value", "expected true or false; found 'maybe'"),
        id="edit-mode-bool",
    ),
    pytest.param(
        """\
          web: just text
        """,
        (10, 8, "wrong-type", "expected a mapping with keys type, repository, edit_mode"),
        id="reloader-not-mapping",
    ),
]


@pytest.mark.parametrize(("reloaders", "expected"), CASES)
def test_mistake_is_reported_at_its_line(
    tmp_path: Path, reloaders: str, expected: tuple[int, int, str, str]
) -> None:
    result = load(tmp_path, reloaders)
    assert result.config is None
    found = errors(result)
    line, column, code, message = expected
    assert any(
        (d_line, d_col, d_code) == (line, column, code) and message in d_message
        for d_line, d_col, d_code, d_message in found
    ), found
    for d in result.diagnostics:
        assert d.file == str(tmp_path / "caproni.yaml")


TOP_LEVEL_CASES = [
    pytest.param(
        "variables:\n  PORT: 1\n", (1, 1, "missing-key", "add 'version: 2'"), id="no-version"
    ),
    pytest.param("version: 3\n", (1, 10, "invalid-value", "expected version 2"), id="version-3"),
    pytest.param(
        "version: 2\nreloader:\n  web: {}\n",
        (2, 1, "unknown-key", "unknown top-level key 'reloader' (did you mean 'reloaders'?)"),
        id="top-level-typo",
    ),
    pytest.param(
        "version: 2\nvariables:\n  1BAD: x\n",
        (3, 3, "invalid-value", "a name of letters, digits and '_'"),
        id="variable-name",
    ),
    pytest.param(
        "version: 2\nruntimevars:\n  PORT: ./port.txt\n",
        (3, 9, "invalid-value", "a URL with a scheme"),
        id="runtimevar-url",
    ),
    pytest.param(
        "version: 2\nrepositories:\n  app:\n    path: x\n",
        (4, 5, "unknown-key", "unknown key 'path'"),
        id="repository-key",
    ),
    pytest.param(
        "version: 2\nreloaders: [a, b]\n",
        (2, 12, "wrong-type", "expected a mapping"),
        id="reloaders-list",
    ),
    pytest.param("", (1, 1, "empty-config", "start it with 'version: 2'"), id="empty-file"),
    pytest.param("- a\n- b\n", (1, 1, "config-not-mapping", "found a list"), id="not-a-mapping"),
    pytest.param(
        "version: 2\nversion: 2\n",
        (2, 1, "yaml-syntax", "duplicate key 'version'"),
        id="duplicate-key",
    ),
    pytest.param(
        "version: 2\nvariables: {A: 1\n",
        (2, 12, "yaml-syntax", "is never closed"),
        id="unclosed-flow",
    ),
    pytest.param("version: !!int 2\n", (1, 10, "yaml-syntax", "YAML tags"), id="tag"),
    pytest.param(
        "version: 2\nvariables:\n  A: &x 1\n  B: *x\n",
        (3, 6, "yaml-syntax", "anchors and aliases"),
        id="anchor",
    ),
    pytest.param(
        "version: 2\n  bad: indent\n",
        (2, 3, "yaml-syntax", "indented more than 'version:'"),
        id="bad-indent",
    ),
]


@pytest.mark.parametrize(("text", "expected"), TOP_LEVEL_CASES)
def test_top_level_mistakes(tmp_path: Path, text: str, expected: tuple[int, int, str, str]) -> None:
    result = load(tmp_path, "", head=text)
    assert result.config is None
    line, column, code, message = expected
    found = errors(result)
    assert any(
        (d_line, d_col, d_code) == (line, column, code) and message in d_message
        for d_line, d_col, d_code, d_message in found
    ), found


def test_every_isolated_entry_reports_its_own_error(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """\
          web:
            type: process
            process:
              processes:
                a:
                  command: run
                  restart: sometimes
                b:
                  comand: run
          api:
            type: process
            repository: missing
            process:
              processes:
                c:
                  command: echo ${NOPE}
        """,
    )
    codes = [(line, code) for line, _, code, _ in errors(result)]
    assert codes == [
        (16, "invalid-value"),
        (18, "unknown-key"),
        (21, "unknown-repository"),
        (25, "unknown-variable"),
    ]


def test_no_unknown_name_noise_when_the_section_itself_is_broken(tmp_path: Path) -> None:
    head = "version: 2\nvariables: [A]\nreloaders:\n"
    result = load(
        tmp_path,
        """\
          web:
            type: process
            process:
              processes:
                a:
                  command: echo ${A}
        """,
        head=head,
    )
    assert [code for _, _, code, _ in errors(result)] == ["wrong-type"]


def test_cycle_is_reported_once_with_its_path(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        """\
          web:
            type: process
            process:
              processes:
                a:
                  command: run
                  depends_on: [b]
                b:
                  command: run
                  depends_on: [api.c]
          api:
            type: process
            process:
              processes:
                c:
                  command: run
                  depends_on: [web.a]
                d:
                  command: run
                  depends_on: [d]
        """,
    )
    found = [
        (line, message) for line, _, code, message in errors(result) if code == "dependency-cycle"
    ]
    assert found == [
        (16, "dependency cycle: web.a -> web.b -> api.c -> web.a"),
        (29, "dependency cycle: api.d -> api.d"),
    ]
