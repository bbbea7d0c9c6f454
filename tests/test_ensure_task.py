"""``invoke ensure`` / ``ensure.resolve`` / ``ensure.verify`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_packages import File, FileSpec, StaticServer, publish, raw_package
from helpers_session import TASKS_PY, run_invoke

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.format import instance_id_of_file
from caproni_tasks.packages.index import InstanceRecord, PackageIndex


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "tasks.py").write_text(TASKS_PY)
    return directory


@pytest.fixture
def server(repo_dir: Path) -> Iterator[StaticServer]:
    repo_dir.mkdir(exist_ok=True)
    with StaticServer(repo_dir) as srv:
        yield srv


def invoke(
    project: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_invoke(project, env, *args, timeout=timeout)


PAUSING_INVOKE = Path(__file__).with_name("pausing_invoke.py")


def spawn(
    project: Path,
    env: dict[str, str],
    *args: str,
    log: Path,
    pause: tuple[str, Path] | None = None,
) -> subprocess.Popen[bytes]:
    """Start invoke; with ``pause=(point, marker)`` it stops at that installer checkpoint."""
    command = [sys.executable, "-m", "invoke", *args]
    if pause is not None:
        command = [sys.executable, str(PAUSING_INVOKE), pause[0], str(pause[1]), *args]
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: object, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def tree(root: Path) -> dict[str, str]:
    """Files under ``root`` (without the state dir): path -> content or link target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".cipd"]
            # The .gitignore the installer puts into a root it creates.
            filenames = [f for f in filenames if f != ".gitignore"]
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            out[rel] = "-> " + os.readlink(path) if path.is_symlink() else path.read_text()
        for name in dirnames:
            if not os.listdir(Path(dirpath) / name):
                out[(Path(dirpath) / name).relative_to(root).as_posix() + "/"] = ""
    return out


V1: dict[str, FileSpec] = {
    "bin/tool": File("v1", executable=True),
    "share/a.txt": "a1",
    "share/old/x.txt": "old",
}
V2: dict[str, FileSpec] = {
    "bin/tool": File("v2", executable=True),
    "share/a.txt": "a2",
    "share/new/y.txt": "new",
}
EXPECTED_V1 = {"bin/tool": "v1", "share/a.txt": "a1", "share/old/x.txt": "old"}
EXPECTED_V2 = {"bin/tool": "v2", "share/a.txt": "a2", "share/new/y.txt": "new"}


def write_ensure(project: Path, service_url: str, *lines: str, settings: str = "") -> Path:
    path = project / "tools.ensure"
    path.write_text(f"$ServiceURL {service_url}\n{settings}\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["local", "http"])
def test_install_update_remove_reinstall(
    kind: str,
    project: Path,
    repo_dir: Path,
    server: StaticServer,
    subprocess_env: dict[str, str],
) -> None:
    publish(repo_dir, "tools/main", V1, refs=["latest"])
    publish(repo_dir, "tools/extra", {"extra.txt": "e"}, refs=["latest"])
    url = repo_dir.as_uri() if kind == "local" else server.url
    write_ensure(project, url, "tools/main latest", "@Subdir more", "tools/extra latest")
    root = project / ".tools"

    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert "installed 2" in done.stdout
    assert tree(root) == {**EXPECTED_V1, "more/extra.txt": "e"}

    publish(repo_dir, "tools/main", V2, refs=["latest"])
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert "updated 1; 1 unchanged" in done.stdout
    assert tree(root) == {**EXPECTED_V2, "more/extra.txt": "e"}

    write_ensure(project, url, "tools/main latest")
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert "removed 1" in done.stdout
    assert tree(root) == EXPECTED_V2

    write_ensure(project, url, "")
    assert invoke(project, subprocess_env, "ensure").returncode == 0
    assert tree(root) == {}

    write_ensure(project, url, "tools/main latest", "@Subdir more", "tools/extra latest")
    if kind == "http":
        server.reset()
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert tree(root) == {**EXPECTED_V2, "more/extra.txt": "e"}
    if kind == "http":
        assert not [r for r in server.requests if "@instances" in r], "reinstalled from the cache"

    done = invoke(project, subprocess_env, "ensure")
    assert "everything is up to date (2 package(s))" in done.stdout


def test_resolved_versions_make_no_version_requests(
    project: Path, repo_dir: Path, server: StaticServer, subprocess_env: dict[str, str]
) -> None:
    v1 = publish(repo_dir, "tools/main", V1, refs=["latest"], tags=["version:1"])
    write_ensure(
        project,
        server.url,
        "tools/main version:1",
        settings="$ResolvedVersions pins/tools.versions\n$VerifiedPlatform linux-amd64 mac-arm64",
    )
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 1
    assert "invoke ensure.resolve" in done.stderr
    assert "Traceback" not in done.stderr

    done = invoke(project, subprocess_env, "ensure.resolve")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(": 1 entry for linux-amd64, mac-arm64\n")
    versions = (project / "pins/tools.versions").read_text()
    assert f"tools/main\n\tversion:1\n\t{v1}\n" in versions

    server.reset()
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert tree(project / ".tools") == EXPECTED_V1
    assert server.requests == [f"/tools/main/@instances/{v1}"]

    # Pinned and installed: no repository is needed at all.
    (project / "tools.ensure").write_text(
        "$ResolvedVersions pins/tools.versions\n$VerifiedPlatform linux-amd64 mac-arm64\n\n"
        "tools/main version:1\n"
    )
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert "everything is up to date (1 package(s))" in done.stdout

    # A line the versions file does not know is an error, and still no version request.
    server.reset()
    publish(repo_dir, "tools/extra", {"e": "e"}, refs=["latest"])
    write_ensure(
        project,
        server.url,
        "tools/main version:1",
        "tools/extra latest",
        settings="$ResolvedVersions pins/tools.versions",
    )
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 1
    assert "not in the versions file" in done.stderr
    assert server.requests == []


def test_verify_reports_stale_and_unresolvable(
    project: Path, repo_dir: Path, server: StaticServer, subprocess_env: dict[str, str]
) -> None:
    publish(repo_dir, "tools/main", V1, refs=["latest"])
    publish(repo_dir, "tools/bin/linux-amd64", {"t": "linux"}, refs=["latest"])
    settings = "$ResolvedVersions tools.versions\n$VerifiedPlatform linux-amd64"
    write_ensure(
        project, server.url, "tools/main latest", "tools/bin/${platform} latest", settings=settings
    )
    assert invoke(project, subprocess_env, "ensure.resolve").returncode == 0
    done = invoke(project, subprocess_env, "ensure.verify")
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    assert not (project / ".tools").exists(), "verify installs nothing"

    v2 = publish(repo_dir, "tools/main", V2, refs=["latest"])
    done = invoke(project, subprocess_env, "ensure.verify")
    assert done.returncode == 1
    assert "stale" in done.stderr and "tools/main latest" in done.stderr and v2 in done.stderr

    assert invoke(project, subprocess_env, "ensure.resolve").returncode == 0
    assert invoke(project, subprocess_env, "ensure.verify").returncode == 0

    settings += "\n$VerifiedPlatform mac-arm64"
    write_ensure(
        project, server.url, "tools/main latest", "tools/bin/${platform} latest", settings=settings
    )
    done = invoke(project, subprocess_env, "ensure.verify")
    assert done.returncode == 1
    assert "when resolving mac-arm64: " in done.stderr
    assert "tools/bin/mac-arm64" in done.stderr

    write_ensure(project, server.url, "tools/main latest")
    done = invoke(project, subprocess_env, "ensure.resolve")
    assert done.returncode == 1
    assert "has no $ResolvedVersions" in done.stderr


def test_dry_run_and_json(project: Path, repo_dir: Path, subprocess_env: dict[str, str]) -> None:
    iid = publish(repo_dir, "tools/main", V1, refs=["latest"])
    write_ensure(project, repo_dir.as_uri(), "@Subdir bin", "tools/main latest")
    done = invoke(project, subprocess_env, "ensure", "--dry-run", "--json", "out.json")
    assert done.returncode == 0, done.stderr
    assert f"would install tools/main in 'bin' {iid}" in done.stdout
    assert done.stdout.endswith("dry run: would install 1; 0 unchanged\n")
    assert not (project / ".tools").exists()
    expected = {"result": {"bin": [{"package": "tools/main", "instance_id": iid}]}}
    assert json.loads((project / "out.json").read_text()) == expected

    done = invoke(project, subprocess_env, "ensure", "--json", "out.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((project / "out.json").read_text()) == expected

    write_ensure(project, repo_dir.as_uri(), "tools/missing latest")
    done = invoke(project, subprocess_env, "ensure", "--json", "out.json")
    assert done.returncode == 1
    error = json.loads((project / "out.json").read_text())
    assert set(error) == {"error", "error_code", "error_details"}
    assert error["error_details"] == {"package": "tools/missing", "version": "latest"}
    assert error["error_code"] == "invalid_version_error"
    assert "tools/missing" in error["error"]
    assert "Traceback" not in done.stderr


def plant(repo_dir: Path, package: str, zip_path: Path) -> str:
    iid = instance_id_of_file(zip_path)
    instances = repo_dir / package / "@instances"
    instances.mkdir(parents=True, exist_ok=True)
    (instances / iid).write_bytes(zip_path.read_bytes())
    index = PackageIndex(package, [InstanceRecord(iid, "2026-01-01T00:00:00Z", 1)], {"latest": iid})
    (repo_dir / package / "@index.json").write_bytes(index.to_json())
    return iid


def test_broken_packages_fail_cleanly(
    project: Path,
    repo_dir: Path,
    server: StaticServer,
    tmp_path: Path,
    subprocess_env: dict[str, str],
) -> None:
    plant(
        repo_dir,
        "tools/evil",
        raw_package(tmp_path / "e.zip", [("../../escape", "x")], package="tools/evil"),
    )
    write_ensure(project, repo_dir.as_uri(), "tools/evil latest")
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 1
    assert "refusing to install tools/evil" in done.stderr and "'..'" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(project / ".tools") == {}
    assert not (tmp_path / "escape").exists()

    iid = publish(repo_dir, "tools/main", V1, refs=["latest"])
    server.truncate[f"/tools/main/@instances/{iid}"] = 100
    write_ensure(project, server.url, "tools/main latest")
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 1
    assert "tools/main" in done.stderr and "Traceback" not in done.stderr
    assert tree(project / ".tools") == {}


POINTS = ["download", "extract", "move", "commit", "committed", "cleanup", "remove"]


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_any_point_is_repaired(
    point: str, project: Path, repo_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    publish(repo_dir, "tools/main", V1, refs=["latest"])
    publish(repo_dir, "tools/other", {"o.txt": "o"}, refs=["latest"])
    write_ensure(project, repo_dir.as_uri(), "tools/main latest", "tools/other latest")
    assert invoke(project, subprocess_env, "ensure").returncode == 0

    publish(repo_dir, "tools/main", V2, refs=["latest"])
    write_ensure(project, repo_dir.as_uri(), "tools/main latest")  # and drop tools/other
    marker = tmp_path / "paused"
    log = tmp_path / "killed.log"
    proc = spawn(project, subprocess_env, "ensure", log=log, pause=(point, marker))
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, what=f"point {point!r}")
        assert marker.exists(), log.read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stdout + done.stderr
    assert tree(project / ".tools") == EXPECTED_V2
    check = invoke(project, subprocess_env, "ensure", "--paranoid", "CheckIntegrity")
    assert check.returncode == 0, check.stderr
    assert "everything is up to date (1 package(s))" in check.stdout
    assert list((project / ".tools/.cipd/tmp").iterdir()) == []


def test_concurrent_runs_are_serialised(
    project: Path, repo_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    publish(repo_dir, "tools/main", V1, refs=["latest"])
    write_ensure(project, repo_dir.as_uri(), "tools/main latest")
    marker = tmp_path / "paused"
    first = spawn(
        project, subprocess_env, "ensure", log=tmp_path / "first.log", pause=("move", marker)
    )
    second_log = tmp_path / "second.log"
    try:
        wait_for(marker.exists, what="the first run to hold the lock")
        impatient = invoke(project, subprocess_env, "ensure", "--lock-timeout", "1")
        assert impatient.returncode == 1
        assert "timed out" in impatient.stderr
        second = spawn(project, subprocess_env, "ensure", log=second_log)
        wait_for(
            lambda: "waiting for it to finish" in second_log.read_text(), what="waiting message"
        )
        marker.unlink()
        assert first.wait(timeout=60) == 0, (tmp_path / "first.log").read_text()
        assert second.wait(timeout=60) == 0, second_log.read_text()
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
    assert "installed 1" in (tmp_path / "first.log").read_text()
    assert "everything is up to date" in second_log.read_text()
    assert tree(project / ".tools") == EXPECTED_V1
    check = invoke(project, subprocess_env, "ensure", "--paranoid", "CheckIntegrity")
    assert "everything is up to date" in check.stdout


def test_paranoid_mode_from_the_ensure_file(
    project: Path, repo_dir: Path, subprocess_env: dict[str, str]
) -> None:
    publish(repo_dir, "tools/main", V1, refs=["latest"])
    write_ensure(
        project, repo_dir.as_uri(), "tools/main latest", settings="$ParanoidMode CheckPresence"
    )
    assert invoke(project, subprocess_env, "ensure").returncode == 0
    root = project / ".tools"
    (root / "share/a.txt").unlink()
    import shutil

    shutil.rmtree(root / "share/old")
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert "repaired 1" in done.stdout
    assert tree(root) == EXPECTED_V1


def test_service_url_and_root_from_options(
    project: Path, repo_dir: Path, subprocess_env: dict[str, str]
) -> None:
    LocalRepository(repo_dir)
    iid = publish(repo_dir, "tools/main", V1, refs=["latest"])
    (project / "tools.ensure").write_text("tools/main latest\n")
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 1
    assert "$ServiceURL" in done.stderr and "--service-url" in done.stderr
    rel = os.path.relpath(repo_dir, project)
    done = invoke(
        project, subprocess_env, "ensure", "--service-url", rel, "--root", "out", "--cache-dir", "c"
    )
    assert done.returncode == 0, done.stderr
    assert tree(project / "out") == EXPECTED_V1
    assert (project / "c" / iid).exists()


def test_each_instance_is_fetched_once_and_bad_files_are_reported(
    project: Path, repo_dir: Path, server: StaticServer, subprocess_env: dict[str, str]
) -> None:
    iid = publish(repo_dir, "tools/main", V1, refs=["latest"])
    write_ensure(project, server.url, "tools/main latest", "@Subdir copy", "tools/main latest")
    done = invoke(project, subprocess_env, "ensure", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert server.count(f"/tools/main/@instances/{iid}") == 1
    assert tree(project / ".tools/copy") == EXPECTED_V1

    (project / "tools.ensure").write_text("$ServiceURL file:///x\n$Bogus 1\n")
    done = invoke(project, subprocess_env, "ensure")
    assert done.returncode == 1
    assert f"{project / 'tools.ensure'}:2: " in done.stderr
    assert "Traceback" not in done.stderr


def test_repository_selection_order_and_relative_paths(
    project: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """$ServiceURL, else --service-url (cwd-relative), else caproni.service_url
    (project-relative, wherever the ensure file and the working directory are)."""
    publish(project / "repo-config", "tools/main", V1, refs=["latest"])
    publish(tmp_path / "repo-cli", "tools/main", V2, refs=["latest"])
    (project / "cfg").mkdir()
    (project / "cfg/tools.ensure").write_text("tools/main latest\n")
    (project / "invoke.yaml").write_text(
        "caproni:\n  service_url: repo-config\n  ensure_file: cfg/tools.ensure\n"
    )
    deep = project / "deep"
    deep.mkdir()
    done = invoke(deep, subprocess_env, "ensure")
    assert done.returncode == 0, done.stderr
    assert tree(project / ".tools") == EXPECTED_V1

    done = invoke(deep, subprocess_env, "ensure", "--service-url", "../../repo-cli")
    assert done.returncode == 0, done.stderr
    assert tree(project / ".tools") == EXPECTED_V2

    (project / "cfg/tools.ensure").write_text(
        f"$ServiceURL {(project / 'repo-config').as_uri()}\n\ntools/main latest\n"
    )
    done = invoke(deep, subprocess_env, "ensure", "--service-url", "../../repo-cli")
    assert done.returncode == 0, done.stderr
    assert tree(project / ".tools") == EXPECTED_V1


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("--service-url", "--service-url: repository directory"),
        ("setting", "caproni.service_url: repository directory"),
        ("ensure", "$ServiceURL in "),
    ],
)
def test_a_bad_repository_is_one_error_naming_its_origin(
    project: Path, subprocess_env: dict[str, str], where: str, expected: str
) -> None:
    lines = "tools/a latest\ntools/b latest\n"
    args: list[str] = []
    if where == "ensure":
        (project / "tools.ensure").write_text(f"$ServiceURL http://127.0.0.1:99999/\n\n{lines}")
    else:
        (project / "tools.ensure").write_text(lines)
        if where == "setting":
            (project / "invoke.yaml").write_text("caproni:\n  service_url: nowhere\n")
        else:
            args = ["--service-url", "nowhere"]
    for task in ("ensure", "ensure.verify"):
        done = invoke(project, subprocess_env, task, *args)
        assert done.returncode == 1
        assert done.stderr.startswith(expected), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (project / ".tools").exists()


def test_unwritable_outputs_are_one_clear_error(
    project: Path, repo_dir: Path, subprocess_env: dict[str, str]
) -> None:
    publish(repo_dir, "tools/main", V1, refs=["latest"])
    (project / "a-file").write_text("not a directory\n")
    write_ensure(project, repo_dir.as_uri(), "tools/main latest")
    done = invoke(project, subprocess_env, "ensure", "--json", "a-file/out.json")
    assert done.returncode == 2, "a usage error, refused before the run"
    assert done.stderr.startswith("--json a-file/out.json: ")
    assert f"{project}/a-file is not a directory" in done.stderr
    assert not (project / ".tools").exists()

    (project / "ro").mkdir()
    (project / "ro").chmod(0o555)
    write_ensure(project, repo_dir.as_uri(), "tools/gone latest")
    done = invoke(project, subprocess_env, "ensure", "--json", "ro/out.json")
    (project / "ro").chmod(0o755)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "tools/gone" in lines[0] and "Traceback" not in done.stderr
    if os.geteuid() != 0:  # root may write into a read-only directory
        assert lines[1].startswith("cannot write the --json file")

    write_ensure(
        project,
        repo_dir.as_uri(),
        "tools/main latest",
        settings="$ResolvedVersions a-file/tools.versions",
    )
    done = invoke(project, subprocess_env, "ensure.resolve")
    assert done.returncode == 1
    assert done.stderr.startswith(f"cannot write the versions file {project}/a-file/")
    assert "Traceback" not in done.stderr
    assert (project / "a-file").read_text() == "not a directory\n"


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--jobs", "abc", "--jobs 'abc': expected a whole number"),
        ("--lock-timeout", "-1", "--lock-timeout"),
        ("--paranoid", "Bogus", "--paranoid 'Bogus': choose one of"),
    ],
)
def test_a_bad_flag_value_with_json_writes_the_error_there(
    project: Path,
    repo_dir: Path,
    subprocess_env: dict[str, str],
    flag: str,
    value: str,
    expected: str,
) -> None:
    """A usage error is one line and exit 2, and --json FILE gets it as any error."""
    publish(repo_dir, "tools/main", V1, refs=["latest"])
    write_ensure(project, repo_dir.as_uri(), "tools/main latest")
    done = invoke(project, subprocess_env, "ensure", "--json", "out.json", flag, value)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    written = json.loads((project / "out.json").read_text())
    assert written == {"error": done.stderr.strip(), "error_code": "bad_argument_error"}
    assert not (project / ".tools").exists()
