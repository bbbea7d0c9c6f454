"""load_config end to end: the model it builds, overlays, notices, caching, robustness."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caproni_tasks.config import (
    LoadResult,
    ProcessRef,
    ProcessSpec,
    ReadyCheck,
    load_config,
)
from caproni_tasks.config.cache import cache_dir
from caproni_tasks.diagnostics import Severity, has_errors
from caproni_tasks.reloader.kinds.mirror import MirrorSettings
from caproni_tasks.reloader.kinds.process import ProcessSettings
from caproni_tasks.reloader.kinds.skaffold import SkaffoldSettings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "caproni-v2" / "caproni.yaml"


def write(directory: Path, text: str, name: str = "caproni.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def processes(result: LoadResult, reloader: str) -> dict[str, ProcessSpec]:
    assert result.config is not None, result.diagnostics
    settings = result.config.reloaders[reloader].settings
    assert isinstance(settings, ProcessSettings)
    return {p.name: p for p in settings.processes}


def test_real_caproni_v2_file_loads_with_one_notice() -> None:
    result = load_config(EXAMPLE, cache=False)
    config = result.config
    assert config is not None, result.diagnostics
    assert [d.severity for d in result.diagnostics] == [Severity.NOTICE]
    notice = result.diagnostics[0]
    assert (notice.line, notice.column, notice.code) == (6, 1, "ignored-section")
    assert "'cluster', 'deployers'" in notice.message
    assert config.notices == (notice.message,)
    assert list(config.reloaders) == ["web", "pages", "api", "jobs"]

    web = config.reloaders["web"]
    assert (web.type, web.repository, web.edit_mode) == ("mirror", "gitlab", True)
    assert web.directory == EXAMPLE.parent / "repos" / "gitlab"
    assert isinstance(web.settings, MirrorSettings)
    assert web.settings.target.name == "webservice"
    assert web.settings.target.container == "web"
    assert web.settings.filesystem == {"mode": "localwithoverrides", "read_only": ["^/etc/.*"]}
    assert web.settings.network == {"outgoing": {"ignore_localhost": True}}
    rails, vite = web.settings.edit_mode_processes
    assert vite.name == "vite"
    assert rails.command == "bin/rails server -e development"
    assert web.settings.ports == {"rails": 8080}
    assert web.settings.local == frozenset({"vite"})  # context: local
    assert web.settings.lifecycle_hooks[0].script == "bin/setup"

    pages = config.reloaders["pages"]
    assert pages.settings == SkaffoldSettings(
        file="skaffold.yaml",
        profiles=("dev",),
        kube_context="kind-caproni-dev",
        namespace="pages",
        port_forward="user",
    )

    api = processes(result, "api")
    server = api["server"]
    assert server.command == "python3 -m http.server 8081 --bind 127.0.0.1"
    assert server.directory == EXAMPLE.parent / "public"
    assert server.env == {"LOG_LEVEL": "debug", "FEATURE_FLAGS": "${runtimevar:FEATURE_FLAGS}"}
    assert server.runtimevars == frozenset({"FEATURE_FLAGS"})
    assert (server.restart, server.max_restarts, server.stop_signal, server.stop_timeout) == (
        "always",
        5,
        "SIGINT",
        5.0,
    )
    assert server.ready == ReadyCheck(http="http://127.0.0.1:8081/")
    assert server.location is not None and server.location.line == 66
    worker = api["worker"]
    assert worker.depends_on == (ProcessRef("api", "server"),)
    assert worker.render({"API_TOKEN": "t0k"}) == (
        'sh -c "echo token=${TOKEN}; exec sleep 3600"',
        {"TOKEN": "t0k"},
    )
    scheduler = processes(result, "jobs")["scheduler"]
    assert scheduler.depends_on == (ProcessRef("api", "server"), ProcessRef("api", "worker"))
    assert config.runtimevars["API_TOKEN"].base_dir == EXAMPLE.parent


def test_defaults_and_value_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 2
        reloaders:
          svc:
            type: process
            process:
              processes:
                plain:
                  command: run
                a: {command: run, stop_signal: term, stop_timeout: 2.5}
                b: {command: run, stop_signal: SIGHUP, stop_timeout: 500ms, directory: /srv}
                c: {command: run, stop_signal: Int, stop_timeout: 1m30s, directory: ../up}
        """,
    )
    found = processes(load_config(path, cache=False), "svc")
    plain = found["plain"]
    assert (plain.restart, plain.max_restarts, plain.stop_signal, plain.stop_timeout) == (
        "on-failure",
        10,
        "SIGTERM",
        10.0,
    )
    assert plain.directory == tmp_path
    assert (plain.watch, plain.ignore, plain.ready, plain.depends_on) == ((), (), None, ())
    assert [(p.stop_signal, p.stop_timeout) for p in (found["a"], found["b"], found["c"])] == [
        ("SIGTERM", 2.5),
        ("SIGHUP", 0.5),
        ("SIGINT", 90.0),
    ]
    assert found["b"].directory == Path("/srv")
    assert found["c"].directory == tmp_path.parent / "up"


def test_repository_and_process_directories(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 2
        repositories:
          app: {repository: "https://example.com/app.git", directory: repos/app}
          lib: {}
        reloaders:
          app:
            type: process
            repository: app
            process:
              processes:
                web: {command: run, directory: services/web}
          lib:
            type: process
            repository: lib
            process:
              processes:
                build: {command: make}
        """,
    )
    result = load_config(path, cache=False)
    assert result.config is not None
    assert result.config.repositories["app"].directory == tmp_path / "repos" / "app"
    assert result.config.repositories["lib"].directory == tmp_path / "lib"
    assert processes(result, "app")["web"].directory == tmp_path / "repos/app/services/web"
    assert processes(result, "lib")["build"].directory == tmp_path / "lib"
    # Not cloned yet: nothing on disk is required for loading.
    assert not (tmp_path / "repos").exists()


def test_depends_on_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 2
        reloaders:
          db:
            type: process
            process:
              processes:
                postgres: {command: run}
                redis: {command: run}
          api:
            type: process
            process:
              processes:
                db: {command: run}
                server:
                  command: run
                  depends_on: [db, db.redis, api.db, db.redis]
                worker:
                  command: run
                  depends_on:
                    - server
          web:
            type: process
            process:
              processes:
                ui:
                  command: run
                  depends_on: [db, api.worker]
        """,
    )
    result = load_config(path, cache=False)
    # "db" inside api means api's own process db (a reloader-wide reference needs no
    # process of that name), duplicates collapse.
    assert processes(result, "api")["server"].depends_on == (
        ProcessRef("api", "db"),
        ProcessRef("db", "redis"),
    )
    assert processes(result, "api")["worker"].depends_on == (ProcessRef("api", "server"),)
    assert processes(result, "web")["ui"].depends_on == (
        ProcessRef("db", "postgres"),
        ProcessRef("db", "redis"),
        ProcessRef("api", "worker"),
    )


def test_variables_flow_style_and_runtimevars(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 2
        variables: {PORT: 8080, PRICE: "$5", EMPTY: ""}
        runtimevars:
          FLAGS: file://./flags.json?decoder=json
        reloaders:
          svc:
            type: process
            process:
              processes:
                web:
                  command: 'serve ${PORT} --price ${PRICE} --raw $${PORT} --home $HOME${EMPTY}'
                  env: {FLAGS: "${runtimevar:FLAGS}", N: 3, ON: true}
                  watch: ["src/**/*.py", "*.toml"]
        """,
    )
    result = load_config(path, cache=False)
    web = processes(result, "svc")["web"]
    assert web.runtimevars == frozenset({"FLAGS"})
    assert web.watch == ("src/**/*.py", "*.toml")
    command, env = web.render({"FLAGS": '{"beta": true}'})
    assert command == "serve 8080 --price $5 --raw ${PORT} --home $HOME"
    assert env == {"FLAGS": '{"beta": true}', "N": "3", "ON": "true"}


def test_third_party_kind_keeps_plain_typed_data(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 2
        reloaders:
          custom:
            type: compose
            compose:
              file: docker-compose.yml
              replicas: 2
              detach: false
              services: [web, db]
        """,
    )
    result = load_config(path, cache=False)
    assert result.config is not None
    spec = result.config.reloaders["custom"]
    assert spec.type == "compose"
    assert spec.settings == {
        "file": "docker-compose.yml",
        "replicas": 2,
        "detach": False,
        "services": ["web", "db"],
    }


def test_missing_and_unreadable_files_are_diagnostics(tmp_path: Path) -> None:
    missing = load_config(tmp_path / "caproni.yaml")
    assert missing.config is None
    assert [(d.code, d.line) for d in missing.diagnostics] == [("file-not-found", 0)]

    (tmp_path / "dir.yaml").mkdir()
    assert [d.code for d in load_config(tmp_path / "dir.yaml").diagnostics] == ["unreadable"]

    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"version: 2\n\xff\xfe\n")
    assert [d.code for d in load_config(binary).diagnostics] == ["unreadable"]


def test_bad_yaml_has_a_location(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 2\nreloaders:\n  web:\n    type: [process\n")
    result = load_config(path)
    assert result.config is None
    (error,) = result.diagnostics
    assert error.code == "yaml-syntax"
    assert error.line >= 4
    assert result.sources[str(path)].startswith("version: 2")


MAIN = """\
version: 2
variables:
  LEVEL: info
reloaders:
  svc:
    type: process
    edit_mode: false
    process:
      processes:
        web:
          command: serve --log ${LEVEL}
          watch: [src/**, lib/**]
          env: {A: "1", B: "2"}
"""


def test_overlay_merges_deeply_and_replaces_lists(tmp_path: Path) -> None:
    main = write(tmp_path, MAIN)
    overlay = write(
        tmp_path,
        """\
        # personal settings; no version needed
        variables:
          LEVEL: debug
        reloaders:
          svc:
            edit_mode: true
            process:
              processes:
                web:
                  watch: [src/**]
                  env: {B: "two"}
          extra:
            type: process
            process:
              processes:
                tail: {command: tail -f log}
        """,
        "caproni.local.yaml",
    )
    result = load_config(main, cache=False)
    assert result.config is not None, result.diagnostics
    assert result.config.overlay == overlay.absolute()
    assert set(result.sources) == {str(main), str(overlay)}
    svc = result.config.reloaders["svc"]
    assert svc.edit_mode is True
    web = processes(result, "svc")["web"]
    assert web.command == "serve --log debug"
    assert web.watch == ("src/**",)
    assert web.env == {"A": "1", "B": "two"}
    assert list(result.config.reloaders) == ["svc", "extra"]
    tail = processes(result, "extra")["tail"]
    assert tail.location is not None
    assert (tail.location.file, tail.location.line) == (str(overlay), 16)


def test_overlay_mistakes_point_into_the_overlay(tmp_path: Path) -> None:
    main = write(tmp_path, MAIN)
    overlay = write(
        tmp_path,
        """\
        reloaders:
          svc:
            process:
              processes:
                web:
                  restart: sometimes
                  env: {C: "${NOPE}"}
          extra:
            type: process
            process:
              processes:
                tail:
                  command: tail ${ALSO_NOPE}
        """,
        "caproni.local.yaml",
    )
    result = load_config(main, cache=False)
    assert result.config is None
    assert [(d.file, d.line, d.column, d.code) for d in result.diagnostics] == [
        (str(overlay), 6, 20, "invalid-value"),
        (str(overlay), 13, 25, "unknown-variable"),
    ]


def test_overlay_syntax_error_and_wrong_version(tmp_path: Path) -> None:
    main = write(tmp_path, MAIN)
    overlay = write(tmp_path, "variables:\n  A: [x\n", "caproni.local.yaml")
    result = load_config(main)
    assert [(d.file, d.code) for d in result.diagnostics] == [(str(overlay), "yaml-syntax")]
    overlay.write_text("version: 1\n")
    result = load_config(main)
    assert [(d.file, d.line, d.code) for d in result.diagnostics] == [
        (str(overlay), 1, "invalid-value")
    ]


def test_empty_overlay_changes_nothing(tmp_path: Path) -> None:
    main = write(tmp_path, MAIN)
    write(tmp_path, "# nothing yet\n", "caproni.local.yaml")
    result = load_config(main, cache=False)
    assert result.config is not None
    assert processes(result, "svc")["web"].command == "serve --log info"


def test_cluster_keys_give_exactly_one_notice(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 2
        lifecycle_hooks:
          - {type: edit_mode_start, script: bin/up}
        cluster: {name: dev}
        deployers: {gitlab: {type: helm}}
        """,
    )
    result = load_config(path, cache=False)
    assert result.config is not None
    (notice,) = result.diagnostics
    assert notice.severity is Severity.NOTICE
    assert (notice.line, notice.code) == (4, "ignored-section")
    assert f"ignoring 'cluster', 'deployers' in {path}:" in notice.message
    assert not has_errors(result.diagnostics)


def test_cache_returns_the_same_config_and_ignores_bad_entries(tmp_path: Path) -> None:
    path = write(tmp_path, MAIN)
    fresh = load_config(path, cache=False)
    first = load_config(path)
    entries = list(cache_dir().glob("*.json"))
    assert len(entries) == 1
    second = load_config(path)
    assert first == fresh
    assert second == fresh
    # A corrupted or foreign entry is not trusted: the file is loaded again.
    entries[0].write_text(json.dumps({"config": {"$type": "os.system", "fields": {}}}))
    assert load_config(path) == fresh
    entries[0].write_text("not json")
    assert load_config(path) == fresh
    # An edit is a new key, never a stale hit.
    path.write_text(MAIN.replace("info", "warn"))
    assert processes(load_config(path), "svc")["web"].command == "serve --log warn"


def test_failed_loads_are_not_cached(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 3\n")
    assert load_config(path).config is None
    assert not cache_dir().exists() or not list(cache_dir().glob("*.json"))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mangled_configs_never_raise(tmp_path: Path, data: st.DataObject) -> None:
    lines = EXAMPLE.read_text().splitlines()
    mangle = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, len(lines) - 1),
                st.sampled_from(["drop", "dup", "value", "indent", "dedent"]),
                st.sampled_from(["", "x", "[a, b]", "{a: 1}", "- x", "${Y}", "0", "-1", "~"]),
            ),
            min_size=1,
            max_size=4,
        )
    )
    for index, action, value in mangle:
        if index >= len(lines):
            continue
        line = lines[index]
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, line)
        elif action == "value" and ":" in line:
            lines[index] = line.split(":", 1)[0] + ": " + value
        elif action == "indent":
            lines[index] = "  " + line
        elif action == "dedent":
            lines[index] = line[2:] if line.startswith("  ") else line
    path = tmp_path / "mangled" / "caproni.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    result = load_config(path, cache=False)
    assert (result.config is None) == has_errors(result.diagnostics)
    for d in result.diagnostics:
        assert d.file == str(path)
        assert d.message


def test_load_from_a_relative_path_reports_relative_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "version: 2\nbogus: 1\n")
    monkeypatch.chdir(tmp_path)
    result = load_config(Path("caproni.yaml"))
    assert [d.location for d in result.diagnostics] == ["caproni.yaml:2:1"]
    assert list(result.sources) == ["caproni.yaml"]


def test_the_documented_examples_load() -> None:
    import re

    from caproni_tasks.config import load_text

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "config.md").read_text(), re.S)
    main = blocks[0]
    (overlay,) = [b for b in blocks if b.startswith("# caproni.local.yaml")]
    result = load_text(Path("/project/caproni.yaml"), main, overlay)
    assert result.config is not None, result.diagnostics
    assert result.config.variables["LOG_LEVEL"] == "trace"
    assert result.config.reloaders["web"].edit_mode is True
    server = processes(result, "api")["server"]
    assert server.watch == ("src/**",)
    assert server.directory == Path("/project/repos/api")
    assert processes(result, "api")["worker"].depends_on == (ProcessRef("api", "server"),)


def test_cache_entries_are_written_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "caproni.yaml"
    path.write_text(EXAMPLE.read_text())
    assert load_config(path).ok
    entries = list(cache_dir().iterdir())
    assert [e.suffix for e in entries] == [".json"]  # no temporary file left behind
    assert entries[0].stat().st_mode & 0o777 == 0o600
    assert load_config(path).ok  # read back
