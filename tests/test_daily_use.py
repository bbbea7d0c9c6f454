"""Daily use, end to end: the ``caproni-tasks`` console script, hints that name the
command the user types, exit codes and ``--json``, one meaning per flag, the root's
``.gitignore``, versions files in ``lint``, resolve errors once per package, Ctrl-C
during ``invoke ensure``, one download per instance for roots sharing a cache, and the
pre-commit hooks. Real processes, files and servers."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_packages import File, publish

import caproni_tasks
from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.tasks import build_namespace

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCRIPT = BIN / "caproni-tasks"
PAUSING_INVOKE = Path(__file__).with_name("pausing_invoke.py")

PREFIXED_TASKS_PY = (
    "from invoke import Collection\nimport caproni_tasks\n\n"
    "ns = Collection()\nns.add_collection(caproni_tasks.namespace(), 'dev')\n"
)
TOP_TASKS_PY = "import caproni_tasks\nns = caproni_tasks.namespace()\n"


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def script(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return run([str(SCRIPT), *args], cwd, env)


def invoke(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return run([sys.executable, "-m", "invoke", *args], cwd, env)


def wait_for(condition: Any, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    directory = tmp_path / "repo"
    LocalRepository(directory)
    publish(directory, "tools/hello", {"bin/hello": File("hi\n")}, refs=["latest"])
    return directory


# --- the console script ----------------------------------------------------------------


def test_console_script_version_and_python_dash_m(tmp_path: Path) -> None:
    assert SCRIPT.exists(), "pip install -e . installs the caproni-tasks console script"
    done = script("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"caproni-tasks {caproni_tasks.__version__}\n")
    done = run([sys.executable, "-m", "caproni_tasks", "--version"], tmp_path)
    assert (done.returncode, done.stdout) == (0, f"caproni-tasks {caproni_tasks.__version__}\n")
    listing = script("--list", cwd=tmp_path).stdout
    assert "ensure.resolve" in listing and "pkg.create" in listing and "run" in listing


def test_console_script_works_without_tasks_py_and_reads_invoke_yaml(
    tmp_path: Path, repo: Path
) -> None:
    (tmp_path / "invoke.yaml").write_text(
        f"caproni:\n  ensure_file: deps/my.ensure\n  root: tools\n  service_url: {repo}\n"
    )
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "my.ensure").write_text("tools/hello  latest\n")
    done = script("ensure", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tools" / "bin" / "hello").read_text() == "hi\n"
    assert not (tmp_path / "tasks.py").exists()
    # A user's tasks.py is neither needed nor read: a broken one changes nothing.
    (tmp_path / "tasks.py").write_text("raise SystemExit('tasks.py was imported')\n")
    done = script("ensure.fmt", "--check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_usage_errors_exit_2_in_one_line(tmp_path: Path) -> None:
    for args in (["nosuchtask"], ["ensure", "--bogus"], ["ensure", "--jobs"]):
        done = script(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    done = script("ensure", "--jobs", "abc", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "--jobs 'abc': expected a whole number\n")
    done = script("lint", cwd=tmp_path)  # nothing configured exists: missing config
    assert done.returncode == 2 and "nothing to lint" in done.stderr
    done = script("lint", "--format", "xml", "--file", "x.ensure", cwd=tmp_path)
    assert done.returncode == 2 and "unknown --format 'xml'" in done.stderr


def test_json_always_prints_json_errors_included(tmp_path: Path, repo: Path) -> None:
    done = script("status", "--json", cwd=tmp_path)  # no caproni.yaml
    assert done.returncode == 2
    assert json.loads(done.stdout)["error_code"] == "usage_error"
    done = script(
        "pkg.describe", "--name", "tools/nope", "--repo", str(repo), "--json", cwd=tmp_path
    )
    assert done.returncode == 2
    data = json.loads(done.stdout)
    assert data["exit_code"] == 2 and 'no such package "tools/nope"' in data["error"]
    done = script("lint", "--format", "json", cwd=tmp_path)
    assert done.returncode == 2 and "nothing to lint" in json.loads(done.stdout)["error"]
    done = script("var", "--json", "nope://x", cwd=tmp_path)
    assert done.returncode == 2 and json.loads(done.stdout)["error_code"] == "usage_error"
    done = script("pkg.describe", "tools/hello", "--repo", str(repo), "--json", cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout)["package"] == "tools/hello"


# --- flags ------------------------------------------------------------------------------


def _flags() -> dict[str, dict[str, list[str]]]:
    """task path -> {long flag: [its names]} for every task of the namespace."""
    out: dict[str, dict[str, list[str]]] = {}

    def walk(collection: Any, prefix: str) -> None:
        for name, task in collection.tasks.items():
            out[prefix + name] = {
                arg.names[0]: list(arg.names)
                for arg in task.get_arguments(ignore_unknown_help=True)
            }
        for name, sub in collection.collections.items():
            walk(sub, f"{prefix}{name}.")

    walk(build_namespace(), "")
    return out


def test_no_short_flag_has_two_meanings() -> None:
    meanings: dict[str, set[str]] = {}
    for flags in _flags().values():
        for names in flags.values():
            for short in (n for n in names if len(n) == 1):
                meanings.setdefault(short, set()).add(names[0])
    assert {s: m for s, m in meanings.items() if len(m) > 1} == {}
    assert meanings.get("o") == {"only"}


def test_every_pkg_task_names_the_package_with_name(tmp_path: Path, repo: Path) -> None:
    flags = _flags()
    takes_a_package = ["pkg.create", "pkg.build", "pkg.set-ref", "pkg.set-tag", "pkg.describe"]
    for path in takes_a_package:
        assert "name" in flags[path], path
    assert not any("package" in f for p, f in flags.items() if p.startswith("pkg."))
    iid = script(
        "pkg.describe", "--name", "tools/hello", "--repo", str(repo), "--json", cwd=tmp_path
    )
    instance_id = json.loads(iid.stdout)["instances"][0]["instance_id"]
    done = script(
        "pkg.set-ref", "--name", "tools/hello", "--version", instance_id, "--ref", "stable",
        "--repo", str(repo), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = script(
        "pkg.set-tag", "tools/hello@stable", "--tag", "v:1", "--repo", str(repo), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr


# --- hints name the command the user types ------------------------------------------------


def test_hints_and_docstrings_follow_the_prefix_and_the_program(tmp_path: Path) -> None:
    (tmp_path / "tools.ensure").write_text("tools/hello latest\n")
    (tmp_path / "tasks.py").write_text(PREFIXED_TASKS_PY)
    done = invoke("dev.ensure.resolve", cwd=tmp_path)
    assert done.returncode == 1
    assert "then run 'invoke dev.ensure.resolve' again" in done.stderr
    helped = invoke("--help", "dev.ensure.verify", cwd=tmp_path).stdout
    assert "invoke dev.ensure.resolve" in helped and "invoke ensure.resolve" not in helped
    assert "`invoke dev.run`" in invoke("--list", cwd=tmp_path).stdout

    done = script("ensure.resolve", cwd=tmp_path)
    assert "then run 'caproni-tasks ensure.resolve' again" in done.stderr
    assert "caproni-tasks ensure.resolve" in script("--help", "ensure.verify", cwd=tmp_path).stdout
    done = run([sys.executable, "-m", "caproni_tasks", "ensure.resolve"], tmp_path)
    assert "then run 'python -m caproni_tasks ensure.resolve' again" in done.stderr

    (tmp_path / "tasks.py").write_text(TOP_TASKS_PY)
    done = invoke("ensure.resolve", cwd=tmp_path)
    assert "then run 'invoke ensure.resolve' again" in done.stderr


# --- the root's .gitignore ----------------------------------------------------------------


def test_ensure_writes_a_gitignore_into_a_root_it_creates(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "tools.ensure").write_text("tools/hello latest\n")
    done = script("ensure", "--service-url", str(repo), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".tools" / ".gitignore").read_text() == "*\n"
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
        ignored = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert ".tools" not in ignored
    # A root that already exists is the user's: nothing is added to it.
    (tmp_path / "mine").mkdir()
    done = script("ensure", "--service-url", str(repo), "--root", "mine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "mine" / ".gitignore").exists()


# --- versions files and resolve errors ------------------------------------------------------


def test_lint_checks_a_versions_file_alone_and_against_its_ensure_file(
    tmp_path: Path, repo: Path
) -> None:
    ensure = tmp_path / "tools.ensure"
    ensure.write_text("$ResolvedVersions tools.versions\n\ntools/hello latest\n")
    done = script("lint", "--file", "tools.ensure", cwd=tmp_path)
    assert done.returncode == 1
    assert "tools.ensure:1:19: error: the $ResolvedVersions file" in done.stdout
    assert "run 'caproni-tasks ensure.resolve' to create it" in done.stdout

    assert script("ensure.resolve", "--service-url", str(repo), cwd=tmp_path).returncode == 0
    assert script("lint", "--", "tools.versions", "tools.ensure", cwd=tmp_path).returncode == 0
    (tmp_path / "tools.versions").write_text("tools/hello\n\tlatest\n")
    done = script("lint", "--file", "tools.versions", cwd=tmp_path)
    assert done.returncode == 1
    assert "tools.versions:2:1: error: failed to parse versions file" in done.stdout

    assert script("ensure.resolve", "--service-url", str(repo), cwd=tmp_path).returncode == 0
    ensure.write_text(
        "$ResolvedVersions tools.versions\n\ntools/hello latest\ntools/other latest\n"
    )
    done = script("lint", "--file", "tools.versions", cwd=tmp_path)
    assert done.returncode == 1
    assert "tools.ensure:4:13: error:" in done.stdout and "not in the versions file" in done.stdout
    # Named together, the same problem is reported once.
    both = script("lint", "--", "tools.versions", "tools.ensure", cwd=tmp_path).stdout
    assert both.count("not in the versions file") == 1

    done = script("ensure", cwd=tmp_path)
    assert done.returncode == 1
    assert "tools/other@latest (line 4): not in the versions file" in done.stderr
    assert "run 'caproni-tasks ensure.resolve' to update it" in done.stderr


def test_a_missing_package_is_reported_once_with_close_names(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "tools.ensure").write_text(
        "$VerifiedPlatform linux-amd64 mac-arm64 windows-amd64\n\ntools/helo latest\n"
    )
    done = script("ensure.verify", "--service-url", str(repo), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count('no such package "tools/helo"') == 1
    assert "when resolving linux-amd64, mac-arm64, windows-amd64: failed to resolve" in done.stderr
    assert 'no package "tools/helo": did you mean "tools/hello"?' in done.stderr
    done = script("ensure", "--service-url", str(repo), cwd=tmp_path)
    assert done.returncode == 1
    assert 'did you mean "tools/hello"?' in done.stderr


# --- Ctrl-C during invoke ensure -----------------------------------------------------------


def test_ctrl_c_says_what_state_the_root_is_in(tmp_path: Path, repo: Path) -> None:
    publish(repo, "tools/other", {"other": File("o\n")}, refs=["latest"])
    (tmp_path / "tasks.py").write_text(TOP_TASKS_PY)
    (tmp_path / "tools.ensure").write_text("tools/hello latest\ntools/other latest\n")
    marker = tmp_path / "paused"
    command = [sys.executable, str(PAUSING_INVOKE), "commit", str(marker)]
    child = subprocess.Popen(
        [*command, "ensure", "--service-url", str(repo), "--jobs", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(marker.exists, what="the run to reach its first commit")
        child.send_signal(signal.SIGINT)
        marker.unlink()
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: " in err
    assert "the next 'invoke ensure' finishes or rolls back the rest" in err
    done = invoke("ensure", "--service-url", str(repo), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".tools" / "other").read_text() == "o\n"
    assert (tmp_path / ".tools" / "bin" / "hello").read_text() == "hi\n"


# --- two roots, one cache ---------------------------------------------------------------


class _GatedHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; instance downloads wait for the gate and are counted."""

    server: _GatedServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        if "/@instances/" in self.path:
            with self.server.lock:
                self.server.downloads += 1
            self.server.gate.wait(60)
        return super().send_head()


class _GatedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        self.lock = threading.Lock()
        self.downloads = 0
        self.gate = threading.Event()

        def handler(*args: Any, **kwargs: Any) -> _GatedHandler:
            return _GatedHandler(*args, directory=str(directory), **kwargs)

        super().__init__(("127.0.0.1", 0), handler)


@pytest.fixture
def gated(repo: Path) -> Iterator[_GatedServer]:
    server = _GatedServer(repo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def _blocked_flock_waiters() -> int:
    """Processes waiting for a flock right now (Linux /proc/locks: '->' lines)."""
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "-> FLOCK" in line)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_two_roots_sharing_a_cache_download_an_instance_once(
    tmp_path: Path, gated: _GatedServer
) -> None:
    (tmp_path / "tools.ensure").write_text("tools/hello latest\n")
    url = f"http://127.0.0.1:{gated.server_address[1]}"
    cache = tmp_path / "cache"
    waiting_before = _blocked_flock_waiters()
    children = [
        subprocess.Popen(
            [
                str(SCRIPT),
                "ensure",
                "--service-url",
                url,
                "--root",
                root,
                "--cache-dir",
                str(cache),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in ("a", "b")
    ]
    try:
        wait_for(lambda: gated.downloads == 1, what="the first download")
        wait_for(
            lambda: _blocked_flock_waiters() > waiting_before,
            what="the second run to wait for the instance's lock",
        )
        gated.gate.set()
        results = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [c.returncode for c in children] == [0, 0], results
    assert gated.downloads == 1
    for root in ("a", "b"):
        assert (tmp_path / root / "bin" / "hello").read_text() == "hi\n"
    assert not [p.name for p in cache.iterdir() if p.name.endswith(".lock")]


# --- pre-commit hooks -----------------------------------------------------------------------


def _hook_repository(where: Path) -> str:
    """A git repository holding this package as a hook repository; its commit."""
    where.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(REPO / name, where / name)
    shutil.copytree(REPO / "grammar", where / "grammar")
    shutil.copytree(
        REPO / "caproni_tasks",
        where / "caproni_tasks",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=where, check=True)
    subprocess.run([*git, "add", "-A"], cwd=where, check=True)
    subprocess.run([*git, "commit", "-qm", "hooks"], cwd=where, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.timeout(600)
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_pre_commit_hooks_run_lint_and_fmt(tmp_path: Path) -> None:
    rev = _hook_repository(tmp_path / "hooks")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {tmp_path / 'hooks'}\n  rev: {rev}\n  hooks:\n"
        "  - id: caproni-lint\n  - id: caproni-ensure-fmt\n"
    )
    (project / "tools.ensure").write_text("# our tools\nb/tool latest\na/tool   latest\n")
    (project / "notes.txt").write_text("$Bogus is not an ensure file\n")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    pre_commit = [str(BIN / "pre-commit"), "run", "--all-files"]

    first = run(pre_commit, project, env, timeout=540)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "files were modified by this hook" in first.stdout
    assert (project / "tools.ensure").read_text() == (
        "# our tools\na/tool  latest\nb/tool  latest\n"
    )
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    second = run(pre_commit, project, env, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr

    (project / "tools.ensure").write_text("# our tools\na/tool  latest\n$ServiceURL https://x\n")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    third = run(pre_commit, project, env, timeout=300)
    assert third.returncode == 1
    assert "tools.ensure:3:1: error: $setting found after non-$setting statements" in third.stdout
