"""The grammar file: where it is found, what it documents, and the fast lexer's fidelity."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark, Token, Tree

import caproni_tasks
from caproni_tasks.ensure import grammar
from caproni_tasks.ensure.parser import WHITESPACE

REPO = Path(__file__).resolve().parent.parent


def test_grammar_found_in_source_checkout() -> None:
    assert grammar.grammar_path() == REPO / "grammar" / "ensure.lark"


def test_installed_location_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "caproni_tasks"
    (package / "ensure").mkdir(parents=True)
    (package / "grammar").mkdir()
    (package / "grammar" / "ensure.lark").write_text("// installed copy\n")
    monkeypatch.setattr(grammar, "__file__", str(package / "ensure" / "grammar.py"))
    assert grammar.grammar_path() == package / "grammar" / "ensure.lark"


def test_missing_grammar_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grammar, "__file__", str(tmp_path / "pkg" / "ensure" / "grammar.py"))
    with pytest.raises(FileNotFoundError, match="reinstall caproni-tasks"):
        grammar.grammar_path()


def test_wheel_force_includes_the_grammar() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"grammar/ensure.lark" = "caproni_tasks/grammar/ensure.lark"' in pyproject
    assert Path(caproni_tasks.__file__).parent.name == "caproni_tasks"


def test_grammar_documents_the_format() -> None:
    text = grammar.grammar_text()
    for needle in [
        "$ServiceURL",
        "$VerifiedPlatform",
        "$ParanoidMode",
        "$ResolvedVersions",
        "$OverrideInstallMode",
        "@Subdir",
        "${name=v1,v2}",
        "misplaced_setting",
        "template:",
        "VARIABLE_REF",
    ]:
        assert needle in text


def test_grammar_whitespace_class_matches_the_parser() -> None:
    text = grammar.grammar_text()
    cls = "[\\t\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    assert f"_WS: /{cls}/" in text
    expanded = "\t\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B))
    assert set(WHITESPACE) == set(expanded + "\u2028\u2029\u202f\u205f\u3000")


def test_grammar_cache_lives_in_the_user_cache_dir(isolated_dirs: Path) -> None:
    path = grammar._cache_file("probe")
    assert path is not None
    assert Path(path).is_relative_to(isolated_dirs)
    assert "/tmp/.lark_cache" not in path


# --- the fast lexer gives lark's contextual lexer's tokens -----------------------------


def _tree_parsers() -> tuple[Lark, Lark]:
    text = grammar.grammar_text()
    common = {"parser": "lalr", "start": "start"}
    return (
        Lark(text, lexer="contextual", **common),
        Lark(text, lexer=grammar.FastLexer, **common),
    )


_REFERENCE, _FAST = _tree_parsers()

alphabet = st.one_of(
    st.sampled_from(WHITESPACE + "\n\x1c\ufeff$@#{}=\u0130\u017f"),
    st.sampled_from(["$ServiceURL", "@SUBDIR", "$paranoidmode", "pkg", "v:1"]),
    st.characters(),
)


def _tokens(tree: Tree[Token]) -> list[tuple[str, str, int | None, int | None]]:
    return [
        (t.type, str(t), t.line, t.column) for t in tree.scan_values(lambda v: isinstance(v, Token))
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(alphabet, max_size=60).map("".join))
def test_fast_lexer_equals_contextual_lexer(text: str) -> None:
    framed = grammar.TEXT_PREFIX + text + grammar.TEXT_SUFFIX
    reference = _REFERENCE.parse(framed)
    fast = _FAST.parse(framed)
    assert fast == reference
    assert _tokens(fast) == _tokens(reference)


def test_built_wheel_carries_and_uses_the_grammar(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import zipfile

    hatchling = shutil.which("hatchling", path=str(Path(sys.executable).parent))
    if hatchling is None:
        pytest.skip("hatchling is not installed in this environment")
    dist = tmp_path / "dist"
    subprocess.run(
        [hatchling, "build", "-t", "wheel", "-d", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = dist.glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        assert "caproni_tasks/grammar/ensure.lark" in archive.namelist()
        archive.extractall(site)
    probe = (
        "from caproni_tasks.ensure import parse\n"
        "from caproni_tasks.ensure.grammar import grammar_path\n"
        "print(grammar_path())\n"
        "print(parse('$ServiceURL https://x\\na/b latest\\n').serialize(), end='')\n"
    )
    env = {"PYTHONPATH": str(site), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        str(site / "caproni_tasks" / "grammar" / "ensure.lark"),
        "$ServiceURL https://x",
        "",
        "a/b  latest",
    ]
