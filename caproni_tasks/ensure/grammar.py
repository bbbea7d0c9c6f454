"""Loading ``ensure.lark`` and building the lark parsers (lazily, once per process).

The grammar ships inside the wheel as ``caproni_tasks/grammar/ensure.lark`` and lives
at ``grammar/ensure.lark`` in a source checkout; both are looked up.

Speed: lark's generic lexer spends most of its time on per-token bookkeeping. The
grammar's statements have a fixed shape (ignored line ends, then a HEAD, then an
optional VALUE), so `StatementLexer` scans that shape with one regular expression
assembled from the grammar's own terminals and hands lark the same tokens its
contextual lexer would (a property test checks this). The LALR parser and the
inline transformer are lark's; no tree is built.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer, PatternStr

if TYPE_CHECKING:
    from lark.common import LexerConf

__all__ = [
    "GRAMMAR_FILE_NAME",
    "grammar_path",
    "grammar_text",
    "lark_parser",
    "template_parser",
]

GRAMMAR_FILE_NAME = "ensure.lark"

#: Text added around the input so every statement stands between two line ends.
TEXT_PREFIX = "\n"
TEXT_SUFFIX = "\n"

_lock = threading.Lock()


def grammar_path() -> Path:
    """Where ``ensure.lark`` is: inside the installed package, else the source tree."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (
        package_dir / "grammar" / GRAMMAR_FILE_NAME,
        package_dir.parent / "grammar" / GRAMMAR_FILE_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the ensure-file grammar {GRAMMAR_FILE_NAME} is missing from the installation "
        f"(looked in {package_dir / 'grammar'} and {package_dir.parent / 'grammar'}); "
        "reinstall caproni-tasks"
    )


@cache
def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


def _cache_file(kind: str) -> str | None:
    """A per-user cache file for lark's analysis of the grammar (never a /tmp path)."""
    try:
        import lark
        from platformdirs import user_cache_path

        digest = hashlib.sha256(
            f"{lark.__version__}\0{kind}\0{grammar_text()}".encode()
        ).hexdigest()[:16]
        directory = user_cache_path("caproni-tasks") / "grammar"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(directory / f"ensure-{kind}-{digest}.lark-cache")
    except OSError:
        return None


class StatementLexer:
    """Tokens for the statement grammar, equal to lark's contextual lexer's output.

    Built from the grammar's terminals: the ignored line-end terminal, the HEAD
    terminals (a statement's first word) and ``VALUE``. Keyword terminals (string
    terminals a HEAD terminal fully matches, like ``$ServiceURL``) retype the HEAD
    token exactly as lark does.
    """

    def __init__(self, lexer_conf: LexerConf) -> None:
        terminals = {t.name: t for t in lexer_conf.terminals}
        (ignored,) = lexer_conf.ignore
        # Disjoint by first character; the most common first.
        self._head_types = ("TEMPLATE", "SETTING", "DIRECTIVE")
        heads = "|".join(
            f"(?P<{name}>{terminals[name].pattern.to_regexp()})" for name in self._head_types
        )
        self._statement_re = re.compile(
            f"(?:{terminals[ignored].pattern.to_regexp()})"
            f"(?:(?:{heads})(?P<VALUE>{terminals['VALUE'].pattern.to_regexp()})?)?"
        )
        keywords: dict[str, re.Pattern[str]] = {}
        for head in self._head_types:
            head_re = re.compile(terminals[head].pattern.to_regexp())
            alternatives = [
                f"(?P<{t.name}>{t.pattern.to_regexp()})"
                for t in lexer_conf.terminals
                if isinstance(t.pattern, PatternStr) and head_re.fullmatch(t.pattern.value)
            ]
            if alternatives:
                keywords[head] = re.compile("|".join(alternatives))
        self._keywords = keywords

    def lex(self, text: str) -> Iterator[Token]:
        new_token = Token._future_new
        match = self._statement_re.match
        keywords = self._keywords
        head_types = self._head_types
        end = len(text)
        pos = 0
        line = 1
        line_start = 0
        while pos < end:
            found = match(text, pos)
            if found is None or found.end() == pos:
                raise UnexpectedCharacters(  # type: ignore[no-untyped-call]
                    text, pos, line, pos - line_start + 1
                )
            kind = found.lastgroup
            if kind is None:  # only line ends, blank and comment lines
                head_type = ""
                head_pos = found.end()
            elif kind == "VALUE":
                for head_type in head_types:
                    head_pos = found.start(head_type)
                    if head_pos >= 0:
                        break
            else:
                head_type = kind
                head_pos = found.start(kind)
            line += text.count("\n", pos, head_pos)
            line_start = text.rfind("\n", pos, head_pos) + 1 or line_start
            pos = found.end()
            if kind is None:
                continue
            head = found.group(head_type)
            keyword_re = keywords.get(head_type)
            if keyword_re is not None:
                keyword = keyword_re.fullmatch(head)
                if keyword is not None and keyword.lastgroup is not None:
                    head_type = keyword.lastgroup
            column = head_pos - line_start + 1
            yield new_token(head_type, head, head_pos, line, column)  # type: ignore[no-untyped-call]
            if kind == "VALUE":
                value_pos = found.start("VALUE")
                value = found.group("VALUE")
                yield new_token(  # type: ignore[no-untyped-call]
                    "VALUE", value, value_pos, line, value_pos - line_start + 1
                )


class FastLexer(Lexer):
    """lark's custom-lexer interface around `StatementLexer`."""

    def __init__(self, lexer_conf: LexerConf) -> None:
        self._lexer = StatementLexer(lexer_conf)

    def lex(self, data: str) -> Iterator[Token]:  # type: ignore[override]
        return self._lexer.lex(data)


def lark_parser(transformer: Any, *, fast_lexer: bool = True) -> Lark:
    """The file parser (LALR, callbacks of ``transformer`` run inline, no tree).

    lark's grammar analysis is cached in the user cache directory (keyed by the
    grammar text and lark version), never in a shared temporary directory.
    """
    with _lock:
        lexer: Any = FastLexer if fast_lexer else "contextual"
        kind = "fast" if fast_lexer else "contextual"
        return Lark(
            grammar_text(),
            parser="lalr",
            lexer=lexer,
            start="start",
            transformer=transformer,
            cache=_cache_file(kind) or False,
        )


@cache
def template_parser() -> Lark:
    """A parser for the ``template`` rule alone (documentation and tests)."""
    return Lark(grammar_text(), parser="lalr", lexer="contextual", start="template")
