"""The examples in README.md and docs/*.md, run as written, so the documentation stays true.

Code blocks are read from the Markdown files themselves: editing a snippet into
something that no longer works fails here. Snippets that register global plugins
run in a child interpreter so they cannot leak into other tests.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from caproni_tasks.ensure import Pin, parse
from caproni_tasks.lint.ensure_file import lint_ensure_file
from caproni_tasks.packages.format import build_package
from caproni_tasks.tasks._common import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(doc: str, language: str) -> list[str]:
    """The fenced code blocks of ``doc`` (relative to the repository) in ``language``."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def block_containing(doc: str, language: str, needle: str) -> str:
    found = [body for body in blocks(doc, language) if needle in body]
    assert len(found) == 1, f"{doc}: expected one {language!r} block with {needle!r}"
    return found[0]


def run_python(code: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def fake_resolver(package: str, version: str) -> Pin:
    digest = hashlib.sha256(f"{package}@{version}".encode()).digest()
    return Pin(package, base64.urlsafe_b64encode(digest + b"\x02").rstrip(b"=").decode())


# --- README.md ------------------------------------------------------------------------


def test_readme_settings_block_lists_every_default() -> None:
    block = block_containing("README.md", "yaml", "caproni:")
    shown: dict[str, object] = {}
    for line in block.splitlines()[1:]:
        key, _, rest = line.strip().partition(":")
        value = rest.split("#", 1)[0].strip()
        words: dict[str, object] = {"null": None, "true": True, "false": False}
        shown[key] = words[value] if value in words else int(value) if value.isdigit() else value
    assert shown == DEFAULTS


def test_readme_composition_snippets_load(
    tmp_path: Path, invoke_cmd: list[str], subprocess_env: dict[str, str]
) -> None:
    snippets = [body for body in blocks("README.md", "python") if "caproni_tasks" in body]
    assert len(snippets) == 2
    expected = [
        ["ensure.install (ensure)", "pkg.create", "run"],
        ["build", "dev.run", "dev.ensure"],
    ]
    for number, (snippet, names) in enumerate(zip(snippets, expected, strict=True)):
        project = tmp_path / f"project{number}"
        project.mkdir()
        (project / "tasks.py").write_text(snippet, encoding="utf-8")
        listed = subprocess.run(
            [*invoke_cmd, "--list"],
            cwd=project,
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        for name in names:
            assert name in listed.stdout


# --- docs/ensure.md -------------------------------------------------------------------


def ensure_sample() -> str:
    return block_containing("docs/ensure.md", "", "$ServiceURL")


def test_ensure_sample_is_canonical_and_lints_clean(tmp_path: Path) -> None:
    text = ensure_sample()
    assert parse(text, filename="tools.ensure").serialize() == text
    assert lint_ensure_file(tmp_path / "tools.ensure", text) == []


def test_ensure_python_snippet_runs() -> None:
    code = block_containing("docs/ensure.md", "python", "resolve_for_platforms")
    namespace: dict[str, object] = {"text": ensure_sample(), "resolver": fake_resolver}
    exec(code, namespace)  # the documentation's own example
    per_platform = namespace["per_platform"]
    assert isinstance(per_platform, dict)
    assert sorted(per_platform) == [("linux", "amd64"), ("mac", "arm64")]
    mac = per_platform[("mac", "arm64")].packages_by_subdir
    assert "tools/only-on-linux/mac-arm64" not in {pin.package for pin in mac[""]}


# --- docs/repository.md ---------------------------------------------------------------


def test_instance_id_formula_matches_builds(tmp_path: Path) -> None:
    formula = block_containing("docs/repository.md", "python", "urlsafe_b64encode").strip()
    source = tmp_path / "hello"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "hello").write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
    out = tmp_path / "hello.zip"
    instance_id = build_package(source, "tools/hello", out)
    data = out.read_bytes()
    names = {"base64": base64, "hashlib": hashlib, "data": data}
    assert eval(formula, names) == instance_id
    assert len(instance_id) == 44 and instance_id.endswith("C")


# --- docs/runtimevar.md ---------------------------------------------------------------


def test_runtimevar_first_snippet(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    snippet = block_containing("docs/runtimevar.md", "python", 'open_variable("file://')
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "flags.json").write_text('{"a": 1, "b": 2}', encoding="utf-8")
    # The snippet loops over changes until the variable is closed: a thread replaces
    # the file atomically once the loop has seen the first value, then closes it.
    driver = textwrap.dedent(
        """
        import builtins, json, os, threading, time
        printed = []
        real_print = builtins.print
        def print(*args, **kwargs):
            real_print(*args, **kwargs, flush=True)
            printed.append(args)
        def wait_for(count):
            deadline = time.monotonic() + 30
            while len(printed) < count and time.monotonic() < deadline:
                time.sleep(0.02)
        def change_then_close():
            wait_for(1)
            with open("conf/flags.json.tmp", "w") as f:
                json.dump({"c": 3}, f)
            os.replace("conf/flags.json.tmp", "conf/flags.json")
            wait_for(2)
            var.close()
        threading.Thread(target=change_then_close, daemon=True).start()
        """
    )
    output = run_python(driver + snippet, tmp_path, subprocess_env).splitlines()
    assert [line.split(" ", 2)[-1] for line in output] == ["['a', 'b']", "['c']"]


def test_runtimevar_custom_scheme_snippet(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    snippet = block_containing("docs/runtimevar.md", "python", 'register_opener("env"')
    usage = re.search(r"^# (open_variable\(.*)$", snippet, re.MULTILINE)
    assert usage is not None
    env = {**subprocess_env, "HOME": str(tmp_path)}
    output = run_python(f"{snippet}\nprint({usage.group(1)})", tmp_path, env)
    assert output.strip() == str(tmp_path)
