"""The pkg.* publishing tasks, through invoke's Program and as real subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers_packages import File, Link, StaticServer, write_tree
from helpers_session import invoke_captured, make_project

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.format import PackageReader, instance_id_of_file

Result = tuple[int, str, str]


run = invoke_captured


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "src",
        {
            "bin/hello": File("#!/bin/sh\necho hello\n", executable=True),
            "share/readme.txt": "hi\n",
            "hello": Link("bin/hello"),
        },
    )


def test_create_builds_registers_and_prints_the_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path
) -> None:
    repo = tmp_path / "repo"
    code, out, err = run(
        capsys,
        "pkg.create", "--in", str(src), "--name", "tools/hello",
        "--ref", "latest", "--ref", "stable", "--tag", "version:1.0", "--tag", "git:abc",
        "--repo", str(repo), "--version-file", "VERSION.json", "--install-mode", "copy",
    )  # fmt: skip
    assert code == 0, err
    iid = out.strip()
    assert "registered tools/hello:" + iid in err
    local = LocalRepository(repo)
    for version in ("latest", "stable", "version:1.0", "git:abc", iid):
        assert local.resolve_version("tools/hello", version) == iid
    instance = repo / "tools/hello/@instances" / iid
    assert instance_id_of_file(instance) == iid
    with PackageReader(instance) as reader:
        assert reader.manifest.version_file == "VERSION.json"
        assert reader.manifest.install_mode == "copy"
        assert {e.name for e in reader.entries} == {"bin/hello", "share/readme.txt", "hello"}


def test_create_twice_is_idempotent_and_keeps_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path
) -> None:
    repo, out_file = tmp_path / "repo", tmp_path / "kept.cipd"
    argv = ["pkg.create", "--in", str(src), "--name", "a/b", "--repo", str(repo)]
    first = run(capsys, *argv, "--out", str(out_file))
    second = run(capsys, *argv)
    assert first[0] == second[0] == 0
    assert first[1] == second[1]
    assert instance_id_of_file(out_file) == first[1].strip()
    assert len(LocalRepository(repo).describe("a/b").instances) == 1


def test_build_then_register(capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path) -> None:
    pkg = tmp_path / "out/p.cipd"
    code, _, err = run(capsys, "pkg.build", "--in", str(src), "--name", "a/b", "--out", str(pkg))
    assert code == 1 and f"directory {pkg.parent} does not exist" in err
    assert not pkg.parent.exists(), "no directory nobody asked for"
    pkg.parent.mkdir()
    code, out, _ = run(capsys, "pkg.build", "--in", str(src), "--name", "a/b", "--out", str(pkg))
    assert code == 0 and out.strip() == instance_id_of_file(pkg)
    code, out2, err = run(
        capsys, "pkg.register", str(pkg), "--ref", "latest", "--repo", str(tmp_path / "r")
    )
    assert code == 0, err
    assert out2 == out
    assert LocalRepository(tmp_path / "r").resolve_version("a/b", "latest") == out.strip()


def two_instances(capsys: pytest.CaptureFixture[str], src: Path, repo: str) -> tuple[str, str]:
    """Publish a/b twice: the first tagged version:1, the second (one more file) latest."""
    _, one, _ = run(
        capsys,
        "pkg.create",
        "--in",
        str(src),
        "--name",
        "a/b",
        "--tag",
        "version:1",
        "--repo",
        repo,
    )
    (src / "second.txt").write_text("2")
    _, two, _ = run(
        capsys, "pkg.create", "--in", str(src), "--name", "a/b", "--ref", "latest", "--repo", repo
    )
    return one.strip(), two.strip()


def test_set_ref_and_set_tag(capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path) -> None:
    repo = str(tmp_path / "repo")
    one, two = two_instances(capsys, src, repo)
    code, out, err = run(
        capsys,
        "pkg.set-ref",
        "a/b",
        "--version",
        "version:1",
        "--ref",
        "stable",
        "--ref",
        "old",
        "--repo",
        repo,
    )
    assert code == 0, err
    assert out.splitlines() == [f"a/b: ref stable -> {one}", f"a/b: ref old -> {one}"]
    code, out, err = run(
        capsys,
        "pkg.set-tag",
        "a/b@latest",
        "--tag",
        "version:2",
        "--tag",
        "os:linux x",
        "--repo",
        repo,
    )
    assert code == 0, err
    local = LocalRepository(repo)
    assert local.resolve_version("a/b", "stable") == one
    assert local.resolve_version("a/b", "version:2") == two
    assert local.resolve_version("a/b", "os:linux x") == two
    # The same tag on a second instance makes it ambiguous, as in the original.
    code, _, err = run(
        capsys, "pkg.set-tag", "a/b", "--version", one, "--tag", "version:2", "--repo", repo
    )
    assert code == 0, err
    code, _, err = run(capsys, "pkg.describe", "a/b", "--version", "version:2", "--repo", repo)
    assert code == 1
    assert "ambiguity when resolving the tag, more than one instance has it" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pkg.create", "--in", "{src}", "--name", "Bad/Name"], "invalid package name"),
        (["pkg.create", "--in", "{src}", "--name", "a/b", "--ref", "Latest"], "invalid ref name"),
        (
            ["pkg.create", "--in", "{src}", "--name", "a/b", "--tag", "nocolon"],
            "doesn't look like a tag",
        ),
        (["pkg.create", "--in", "{tmp}/missing", "--name", "a/b"], "is not a directory"),
        (["pkg.create", "--name", "a/b"], "needs --in DIR and --name"),
        (
            ["pkg.create", "--in", "{src}", "--name", "a/b", "--install-mode", "x"],
            "unknown install_mode",
        ),
        (["pkg.set-ref", "a/b", "--ref", "x"], "pass --version"),
        (["pkg.set-ref", "a/b", "--version", "latest"], "pass at least one --ref"),
        (["pkg.set-tag", "a/b", "--version", "latest", "--tag", "k:v"], 'no such package "a/b"'),
        (["pkg.describe", "a/b@x", "--version", "y"], "two versions given"),
        (["pkg.register", "{tmp}/nothing.cipd"], "no such file"),
    ],
)
def test_mistakes_are_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path, argv: list[str], message: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    args = [a.format(src=src, tmp=tmp_path) for a in argv] + ["--repo", str(repo)]
    code, out, err = run(capsys, *args)
    assert code == (2 if message in USAGE_ERRORS else 1)
    assert message in err
    assert "Traceback" not in err and out == ""
    assert list(repo.iterdir()) == []


#: Messages of usage errors (exit 2): missing or conflicting flags, unknown names.
USAGE_ERRORS = {
    "needs --in DIR and --name",
    "pass --version",
    "pass at least one --ref",
    'no such package "a/b"',
    "two versions given",
}


def test_a_repository_that_cannot_be_written_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path
) -> None:
    (tmp_path / "file").write_text("x")
    repo = str(tmp_path / "file" / "repo")
    code, out, err = run(capsys, "pkg.create", "--in", str(src), "--name", "a/b", "--repo", repo)
    assert code == 1 and out == ""
    assert err.startswith(f"error: cannot store an instance of a/b in the repository {repo}: ")
    assert "Not a directory" in err and len(err.strip().splitlines()) == 1


def test_no_repository_configured(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pkg.describe", "a/b")
    assert code == 2 and "no repository" in err and "caproni.service_url" in err


def test_http_repository_is_read_for_describe_and_refused_for_writes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path
) -> None:
    repo = tmp_path / "repo"
    _, iid, _ = run(
        capsys,
        "pkg.create",
        "--in",
        str(src),
        "--name",
        "a/b",
        "--ref",
        "latest",
        "--repo",
        str(repo),
    )
    with StaticServer(repo) as server:
        code, out, err = run(capsys, "pkg.describe", "a/b", "--repo", server.url, "--json")
        assert code == 0, err
        data = json.loads(out)
        assert data["refs"] == {"latest": iid.strip()} and data["repository"] == server.url
        code, out, err = run(
            capsys, "pkg.describe", "a/b", "--version", "latest", "--repo", server.url
        )
        assert code == 0 and f"latest -> {iid.strip()}" in out and "refs: latest" in out
        code, _, err = run(
            capsys, "pkg.create", "--in", str(src), "--name", "a/b", "--repo", server.url
        )
        assert code == 1 and "read-only" in err
        code, _, err = run(
            capsys, "pkg.set-ref", "a/b", "--version", "latest", "--ref", "x", "--repo", server.url
        )
        assert code == 1 and "read-only" in err


def test_describe_text_lists_instances_refs_and_tags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path
) -> None:
    repo = str(tmp_path / "repo")
    one, two = two_instances(capsys, src, repo)
    code, out, _ = run(capsys, "pkg.describe", "a/b", "--repo", repo)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Package:    a/b"
    assert lines[2] == "Instances (oldest first):"
    assert lines[3].split()[0] == one and "tags: version:1" in lines[3]
    assert lines[4].split()[0] == two and "refs: latest" in lines[4]
    assert "Refs:" in lines and "Tags:" in lines


def test_subprocess_with_configured_service_url(
    tmp_path: Path, src: Path, invoke_cmd: list[str], subprocess_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    make_project(project)
    (project / "invoke.yaml").write_text("caproni:\n  service_url: packages\n")

    def invoke(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*invoke_cmd, *argv],
            cwd=project / "sub",  # invoke finds tasks.py upwards; the setting is project-relative
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    created = invoke("pkg.create", "--in", str(src), "--name", "tools/hello", "--ref", "latest")
    assert created.returncode == 0, created.stderr
    iid = created.stdout.strip()
    assert (project / "packages/tools/hello/@instances" / iid).is_file()
    described = invoke("pkg.describe", "tools/hello", "--json")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["refs"]["latest"] == iid
    bad = invoke("pkg.set-tag", "tools/hello", "--version", "latest", "--tag", "no_colon")
    assert bad.returncode == 1
    assert bad.stderr.strip() == 'error: "no_colon" doesn\'t look like a tag (a key:value pair)'


def test_list_packages_of_a_local_repository(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, src: Path
) -> None:
    repo = str(tmp_path / "repo")
    for name in ("z/last", "a/first", "a/first/nested"):
        assert run(capsys, "pkg.create", "--in", str(src), "--name", name, "--repo", repo)[0] == 0
    code, out, _ = run(capsys, "pkg.list", "--repo", repo)
    assert code == 0 and out.splitlines() == ["a/first", "a/first/nested", "z/last"]
    code, _, err = run(capsys, "pkg.list", "--repo", "http://127.0.0.1:9/")
    assert code == 1 and "a static server has no listing of its packages" in err
