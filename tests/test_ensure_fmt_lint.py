"""``invoke ensure.fmt`` and ``invoke lint`` on ensure files, through invoke's Program."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers_session import invoke_exit_code, make_project

from caproni_tasks.ensure import host_template_args

REPO = Path(__file__).resolve().parent.parent
CANONICAL = "$VerifiedPlatform linux-amd64\n\nb/pkg  latest\n\n@Subdir x\na  v:1\n"
MESSY = "$VerifiedPlatform   linux-amd64\n@Subdir x\na v:1\n@Subdir\nb/pkg latest\n"


run = invoke_exit_code


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- ensure.fmt ------------------------------------------------------------------------


def test_check_passes_on_canonical_default_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tools.ensure").write_text(CANONICAL)
    assert run(["ensure.fmt", "--check"]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == ""


def test_check_prints_diff_changes_nothing_and_fails(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = project / "tools.ensure"
    target.write_text(MESSY)
    before = target.stat()
    assert run(["ensure.fmt", "--check"]) == 1
    out = capsys.readouterr()
    assert "--- tools.ensure (current)\n+++ tools.ensure (canonical)\n" in out.out
    assert "-$VerifiedPlatform   linux-amd64\n" in out.out
    assert "+b/pkg  latest\n" in out.out
    assert "not in canonical form" in out.err
    assert target.read_text() == MESSY
    assert target.stat().st_mtime_ns == before.st_mtime_ns


def test_rewrite_in_place_keeps_mode(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = project / "tools.ensure"
    target.write_text(MESSY)
    target.chmod(0o640)
    assert run(["ensure.fmt"]) == 0
    assert target.read_text() == CANONICAL
    assert target.stat().st_mode & 0o777 == 0o640
    assert "reformatted tools.ensure" in capsys.readouterr().out
    assert [p.name for p in project.iterdir()] == ["tools.ensure"]  # no temp file left
    assert run(["ensure.fmt", "--check"]) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_rewrite_keeps_the_owner(project: Path) -> None:
    target = project / "tools.ensure"
    target.write_text(MESSY)
    os.chown(target, 12345, 12345)
    assert run(["ensure.fmt"]) == 0
    assert target.read_text() == CANONICAL
    assert (target.stat().st_uid, target.stat().st_gid) == (12345, 12345)


def test_several_files_by_option_and_after_double_dash(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["a.ensure", "b.ensure", "c.ensure", "d.ensure"]
    for name in names:
        (project / name).write_text(MESSY)
    argv = ["ensure.fmt", "--check", "--file", "a.ensure", "--file", "b.ensure"]
    assert run([*argv, "--", "c.ensure"]) == 1
    out = capsys.readouterr().out
    assert [name for name in names if f"--- {name} (current)" in out] == names[:3]
    assert run(["ensure.fmt", "--file", "a.ensure", "--", "b.ensure", "c.ensure"]) == 0
    assert [(project / n).read_text() == CANONICAL for n in names] == [True, True, True, False]


def test_crlf_file_is_not_canonical(project: Path) -> None:
    (project / "tools.ensure").write_bytes(CANONICAL.replace("\n", "\r\n").encode())
    assert run(["ensure.fmt", "--check"]) == 1
    assert run(["ensure.fmt"]) == 0
    assert (project / "tools.ensure").read_bytes() == CANONICAL.encode()


def test_symlinked_file_is_rewritten_through_the_link(project: Path) -> None:
    (project / "real.ensure").write_text(MESSY)
    (project / "tools.ensure").symlink_to("real.ensure")
    assert run(["ensure.fmt"]) == 0
    assert (project / "tools.ensure").is_symlink()
    assert (project / "real.ensure").read_text() == CANONICAL


def test_parse_error_is_a_diagnostic_not_a_traceback(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "a latest\n  $Nope x\n"
    (project / "tools.ensure").write_text(bad)
    assert run(["ensure.fmt"]) == 1
    out = capsys.readouterr()
    assert "tools.ensure:2:3: error: $setting found after non-$setting statements\n" in out.out
    assert "      $Nope x\n      ^\n" in out.out
    assert "Traceback" not in out.out + out.err
    assert (project / "tools.ensure").read_text() == bad


def test_other_files_are_still_formatted_when_one_is_broken(project: Path) -> None:
    (project / "bad.ensure").write_text("$Nope\n")
    (project / "good.ensure").write_text(MESSY)
    assert run(["ensure.fmt", "--file", "bad.ensure", "--file", "good.ensure"]) == 1
    assert (project / "good.ensure").read_text() == CANONICAL


def test_missing_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["ensure.fmt", "--check"]) == 1
    assert (
        "tools.ensure: error: no such file (the configured ensure file: name files with "
        "--file, or set caproni.ensure_file)\n" in capsys.readouterr().out
    )
    assert run(["ensure.fmt", "--file", "other.ensure"]) == 1
    assert "other.ensure: error: no such file\n" in capsys.readouterr().out


def test_not_utf8(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tools.ensure").write_bytes(b"# ok\na \xff\n")
    assert run(["ensure.fmt"]) == 1
    assert (
        "tools.ensure:2:3: error: not UTF-8 text: byte 0xff cannot be decoded; "
        "save the file as UTF-8\n" in capsys.readouterr().out
    )
    assert (project / "tools.ensure").read_bytes() == b"# ok\na \xff\n"


def test_a_directory_is_not_an_ensure_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tools.ensure").mkdir()
    assert run(["ensure.fmt"]) == 1
    assert "tools.ensure: error: cannot read the file: Is a directory\n" in capsys.readouterr().out


def test_a_read_only_file_is_not_rewritten(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = project / "tools.ensure"
    target.write_text(MESSY)
    target.chmod(0o444)
    (project / "good.ensure").write_text(MESSY)
    assert run(["ensure.fmt", "--file", "tools.ensure", "--file", "good.ensure"]) == 1
    out = capsys.readouterr()
    assert "tools.ensure: error: the file is read-only; not rewritten" in out.out
    assert "reformatted good.ensure" in out.out
    assert target.read_text() == MESSY
    assert (project / "good.ensure").read_text() == CANONICAL
    assert sorted(p.name for p in project.iterdir()) == ["good.ensure", "tools.ensure"]
    # --check still reports it.
    assert run(["ensure.fmt", "--check"]) == 1
    assert "+b/pkg  latest" in capsys.readouterr().out


def test_a_failed_write_keeps_the_other_files_problems(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "bad.ensure").write_text("$Nope\n")
    locked = project / "locked"
    locked.mkdir()
    (locked / "tools.ensure").write_text(MESSY)
    locked.chmod(0o555)
    try:
        code = run(["ensure.fmt", "--file", "bad.ensure", "--file", "locked/tools.ensure"])
    finally:
        locked.chmod(0o755)
    out = capsys.readouterr()
    assert code == 1
    assert 'bad.ensure:1:1: error: unknown $setting: "$Nope"' in out.out
    if (locked / "tools.ensure").read_text() == MESSY:  # root may write anyway
        assert "locked/tools.ensure: error: cannot write the file: Permission denied" in out.out
    assert "Traceback" not in out.out + out.err


def test_help_says_comments_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["ensure.fmt", "--help"]) == 0
    out = capsys.readouterr().out
    assert "keeping comments" in out
    assert "--strip-comments" in out


def test_bundled_example_is_canonical(capsys: pytest.CaptureFixture[str]) -> None:
    example = REPO / "examples" / "demo" / "tools.ensure"
    assert run(["ensure.fmt", "--check", "--file", str(example)]) == 0
    assert run(["lint", "--file", str(example)]) == 0


def test_fmt_as_a_real_process(
    tmp_path: Path, subprocess_env: dict[str, str], invoke_cmd: list[str]
) -> None:
    make_project(tmp_path)
    (tmp_path / "tools.ensure").write_text(MESSY)
    check = subprocess.run(
        [*invoke_cmd, "ensure.fmt", "--check"],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1, check.stderr
    assert "+++ tools.ensure (canonical)" in check.stdout
    fix = subprocess.run(
        [*invoke_cmd, "ensure.fmt"],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fix.returncode == 0, fix.stderr
    assert (tmp_path / "tools.ensure").read_text() == CANONICAL


def test_configured_ensure_file_is_the_default(
    tmp_path: Path, subprocess_env: dict[str, str], invoke_cmd: list[str]
) -> None:
    make_project(tmp_path)
    (tmp_path / "invoke.yaml").write_text("caproni:\n  ensure_file: deps/my.ensure\n")
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "my.ensure").write_text(MESSY)
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    done = subprocess.run(
        [*invoke_cmd, "--search-root", str(tmp_path), "ensure.fmt"],
        cwd=sub,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "deps" / "my.ensure").read_text() == CANONICAL


# --- lint ------------------------------------------------------------------------------

LINT_ME = """\
$VerifiedPlatform linux-amd64 windows-amd64
$ParanoidMode Bogus
tools/${os}/A latest
tools/x  NOT-A-VERSION
tools/x latest
win/${os=windows}/B latest
"""


def test_lint_text_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tools.ensure").write_text(LINT_ME)
    assert run(["lint", "--file", "tools.ensure"]) == 1
    out = capsys.readouterr().out
    assert (
        'tools.ensure:2:15: error: bad $ParanoidMode: unrecognized paranoid mode "Bogus"\n'
        "    $ParanoidMode Bogus\n"
        "                  ^\n"
    ) in out
    assert "tools.ensure:3:1: error: bad package name (line 3):" in out
    assert (
        'tools.ensure:4:10: error: bad package version (line 4): bad version "NOT-A-VERSION"' in out
    )
    assert "tools.ensure:5:1: error: duplicate package" not in out  # line 4 was invalid
    assert "win/windows/B" in out and "(when resolving for windows-amd64)" in out


def test_lint_reports_a_shared_problem_once(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tools.ensure").write_text(
        "$VerifiedPlatform linux-amd64 mac-arm64 windows-amd64\nBad/Name latest\n"
    )
    assert run(["lint", "--file", "tools.ensure"]) == 1
    out = capsys.readouterr().out
    assert out.count("error:") == 1
    assert "when resolving" not in out


def test_lint_duplicates_and_templates(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tools.ensure").write_text("a/b latest\n@Subdir\n a/b v:1\nc/${nope} latest\n")
    assert run(["lint", "--file", "tools.ensure", "--format", "json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [(d["line"], d["column"], d["code"]) for d in found] == [
        (3, 2, "duplicate-package"),
        (4, 3, "bad-template"),
    ]
    assert found[0]["message"] == 'duplicate package in subdir "": "a/b": defined on line 1 and 3'
    assert {d["severity"] for d in found} == {"error"}


def test_lint_github_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tools.ensure").write_text("$Nope x\n")
    assert run(["lint", "--file", "tools.ensure", "--format", "github"]) == 1
    out = capsys.readouterr().out
    assert out == (
        '::error file=tools.ensure,line=1,col=1,title=unknown-setting::unknown $setting: "$Nope"\n'
    )


def test_lint_continues_after_parse_errors(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tools.ensure").write_text(
        "$ParanoidMode x\n$Bad 1\n@Subdir ../up\nA latest\n@Frob\nok latest\n"
    )
    assert run(["lint", "--file", "tools.ensure", "--format", "json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [(d["line"], d["code"]) for d in found] == [
        (1, "bad-paranoid-mode"),
        (2, "unknown-setting"),
        (3, "bad-subdir"),
        (4, "bad-package-name"),
        (5, "unknown-directive"),
    ]


def test_lint_names_a_bad_subdir_as_written_in_later_problems(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "tools.ensure").write_text("@Subdir ${bogus}\na/b latest\na/b v:1\n")
    assert run(["lint", "--file", "tools.ensure", "--format", "json"]) == 1
    messages = [d["message"] for d in json.loads(capsys.readouterr().out)]
    assert messages == [
        'bad subdir "${bogus}": unknown variable "${bogus}"',
        'duplicate package in subdir "${bogus}": "a/b": defined on line 2 and 3',
    ]


def test_lint_explains_a_byte_order_mark(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tools.ensure").write_text("\ufeff$ServiceURL https://x\n$ParanoidMode x\n")
    assert run(["lint", "--file", "tools.ensure", "--format", "json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [(d["line"], d["code"]) for d in found] == [(1, "bad-template"), (2, "setting-order")]
    assert all(d["message"].endswith("save it without one") for d in found)
    assert found[0]["message"].startswith(
        "failed to expand package template (line 1): "
        'unable to process some variables in "\\ufeff$ServiceURL"'
    )


def test_lint_clean_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tools.ensure").write_text(CANONICAL)
    assert run(["lint", "--file", "tools.ensure"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "ok: no errors in tools.ensure\n"


def test_lint_resolves_for_the_host_too(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = host_template_args()
    (project / "tools.ensure").write_text(
        f"$VerifiedPlatform plan9-z80\nt/${{os={host['os']}}}/BAD latest\n"
    )
    assert run(["lint", "--file", "tools.ensure"]) == 1
    assert f"(when resolving for {host['platform']})" in capsys.readouterr().out


def test_lint_default_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tools.ensure").write_text("Bad latest\n")
    assert run(["lint"]) == 1
    assert "tools.ensure:1:1: error: bad package name" in capsys.readouterr().out
