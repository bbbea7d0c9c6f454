"""``parse(text) -> EnsureFile``: the meaning of each statement, with the client's errors.

The syntax is ``grammar/ensure.lark``; lark's LALR parser calls the methods of
`_Statements` as it reduces each statement, in file order, so the first problem in
the file is the one reported (as the original client does).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from caproni_tasks.ensure.errors import EnsureParseError, ValidationError
from caproni_tasks.ensure.model import PARANOID_MODES, EnsureFile, PackageDef
from caproni_tasks.ensure.quoting import go_quote
from caproni_tasks.ensure.template import TemplateError, expand_template, host_template_args
from caproni_tasks.ensure.validation import service_url_problem, validate_subdir

if TYPE_CHECKING:
    from lark import Lark, Token

__all__ = ["WHITESPACE", "parse", "split_statement"]

#: The characters a line is trimmed of (Go's ``unicode.IsSpace`` without ``\n``).
WHITESPACE = (
    "\t\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_FIELDS_RE = re.compile(f"[^{re.escape(WHITESPACE)}]+")

_INSTALL_MODES = ("", "copy", "symlink")


def _key(head: str) -> str:
    """HEAD lower-cased the way Go's ``strings.ToLower`` does for our ASCII keywords.

    Python's ``str.lower`` maps U+0130 to two characters, Go to ``i``; the regex
    ``i`` flag also folds ``ſ`` and ``ı`` that Go keeps. This check is exact.
    """
    return head.replace("\u0130", "i").lower()


def split_statement(line: str) -> tuple[int, str, int, str]:
    """``(head column, HEAD, rest column, REST)`` of one line (columns 1-based, 0 if none).

    For diagnostics: finds where a statement's parts start on its source line.
    """
    stripped = line.lstrip(WHITESPACE)
    if not stripped:
        return 0, "", 0, ""
    head_col = len(line) - len(stripped) + 1
    head = stripped
    for index, char in enumerate(stripped):
        if char in WHITESPACE:
            head = stripped[:index]
            break
    after = stripped[len(head) :]
    rest = after.strip(WHITESPACE)
    rest_col = head_col + len(head) + (len(after) - len(after.lstrip(WHITESPACE))) if rest else 0
    return head_col, head, rest_col, rest


class _FileBuilder:
    """The state of one parse: the file so far and the current ``@Subdir``."""

    __slots__ = ("file", "host_args", "subdir", "subdir_list")

    def __init__(self, filename: str | None, host_args: Mapping[str, str]) -> None:
        self.file = EnsureFile(filename=filename)
        self.host_args = host_args
        self.subdir = ""
        self.subdir_list: list[PackageDef] | None = None


def _value(children: list[Token]) -> tuple[str, int]:
    """The REST of a statement and its 1-based column ("" and the HEAD's end if none)."""
    if len(children) < 2:
        head = children[0]
        return "", (head.column or 1) + len(head)
    token = children[1]
    stripped = token.lstrip(WHITESPACE)
    return stripped, (token.column or 1) + len(token) - len(stripped)


def _fail(token: Token, code: str, message: str, column: int | None = None) -> EnsureParseError:
    return EnsureParseError(
        (token.line or 2) - 1,
        message,
        column=column if column is not None else token.column or 1,
        code=code,
    )


# --- settings: one function per key, called with the builder and the rule's tokens ---


def _set_service_url(builder: _FileBuilder, children: list[Token]) -> None:
    file = builder.file
    value, column = _value(children)
    if file.service_url:
        raise _fail(children[0], "duplicate-setting", "$ServiceURL may only be set once per file")
    problem = service_url_problem(value)
    if problem is not None:
        raise _fail(
            children[0],
            "bad-service-url",
            f"expecting '$ServiceURL <url>' but url is invalid: {problem}",
            column,
        )
    file.service_url = value


def _add_verified_platforms(builder: _FileBuilder, children: list[Token]) -> None:
    value, column = _value(children)
    platforms = builder.file.verified_platforms
    for index, found in enumerate(_FIELDS_RE.finditer(value), start=1):
        entry = found.group(0)
        if entry.count("-") != 1:
            raise _fail(
                children[0],
                "bad-platform",
                f"invalid platform entry #{index}: platform must be <os>-<arch>, "
                f"got {go_quote(entry)}",
                column + found.start(),
            )
        os_name, _, arch = entry.partition("-")
        platforms.append((os_name, arch))


def _set_paranoid_mode(builder: _FileBuilder, children: list[Token]) -> None:
    value, column = _value(children)
    if value not in PARANOID_MODES:
        raise _fail(
            children[0],
            "bad-paranoid-mode",
            f"bad $ParanoidMode: unrecognized paranoid mode {go_quote(value)}",
            column,
        )
    builder.file.paranoid_mode = value


def _set_resolved_versions(builder: _FileBuilder, children: list[Token]) -> None:
    builder.file.resolved_versions = _value(children)[0]


def _set_override_install_mode(builder: _FileBuilder, children: list[Token]) -> None:
    value, column = _value(children)
    if value not in _INSTALL_MODES:
        raise _fail(
            children[0], "bad-install-mode", f"invalid install mode {go_quote(value)}", column
        )
    if value != "copy":
        raise _fail(children[0], "bad-install-mode", "only copy mode is allowed", column)
    builder.file.override_install_mode = value


_SETTING_HANDLERS: dict[str, Callable[[_FileBuilder, list[Token]], None]] = {
    "$serviceurl": _set_service_url,
    "$verifiedplatform": _add_verified_platforms,
    "$paranoidmode": _set_paranoid_mode,
    "$resolvedversions": _set_resolved_versions,
    "$overrideinstallmode": _set_override_install_mode,
}


def _enter_subdir(builder: _FileBuilder, children: list[Token]) -> None:
    """``@Subdir``: checked now by expanding it for the host in validate mode."""
    head = children[0]
    value, column = _value(children)
    try:
        expanded = expand_template(value, builder.host_args, validate=True)
    except TemplateError as err:
        raise _fail(
            head, "bad-subdir", f"bad subdir {go_quote(value)}: {err}", column + err.offset
        ) from None
    try:
        validate_subdir(expanded)
    except ValidationError as err:
        raise _fail(head, "bad-subdir", str(err), column) from None
    builder.subdir = value
    builder.subdir_list = None
    builder.file.subdir_lines.setdefault(value, (head.line or 2) - 1)


class _Statements:
    """lark callbacks, one per grammar rule; the state of a parse is a per-thread builder.

    Keys are matched here the way Go lower-cases them (`_key`), whichever keyword
    terminal lark chose: the regex ``i`` flag folds a few characters Go does not.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def begin(self, builder: _FileBuilder | None) -> None:
        self._local.builder = builder

    def _setting(self, children: list[Token]) -> None:
        head = children[0]
        handler = _SETTING_HANDLERS.get(_key(head))
        if handler is None:
            raise _fail(head, "unknown-setting", f"unknown $setting: {go_quote(str(head))}")
        handler(self._local.builder, children)

    service_url = verified_platform = paranoid_mode = _setting
    resolved_versions = override_install_mode = unknown_setting = _setting

    def _directive(self, children: list[Token]) -> None:
        head = children[0]
        if _key(head) != "@subdir":
            raise _fail(head, "unknown-directive", f"unknown @directive: {go_quote(str(head))}")
        _enter_subdir(self._local.builder, children)

    subdir = unknown_directive = _directive

    def package(self, children: list[Token]) -> None:
        builder: _FileBuilder = self._local.builder
        target = builder.subdir_list
        if target is None:
            target = builder.file.packages_by_subdir.setdefault(builder.subdir, [])
            builder.subdir_list = target
        head = children[0]
        version = children[1].lstrip(WHITESPACE) if len(children) > 1 else ""
        target.append(PackageDef(str(head), str(version), (head.line or 2) - 1))

    def misplaced_setting(self, children: list[Token]) -> None:
        raise _fail(children[0], "setting-order", "$setting found after non-$setting statements")

    def start(self, children: list[Any]) -> None:
        return None


_parser_lock = threading.Lock()
_parser: tuple[Lark, _Statements] | None = None


def _get_parser() -> tuple[Lark, _Statements]:
    global _parser
    with _parser_lock:
        if _parser is None:
            from caproni_tasks.ensure.grammar import lark_parser

            callbacks = _Statements()
            _parser = (lark_parser(callbacks), callbacks)
        return _parser


def parse(
    text: str,
    *,
    filename: str | None = None,
    host_args: Mapping[str, str] | None = None,
) -> EnsureFile:
    """Parse an ensure file; raises `EnsureParseError` (``str()`` as the client words it).

    ``host_args`` are the template variables ``@Subdir`` values are checked with
    (the host's by default).
    """
    from lark.exceptions import UnexpectedInput, UnexpectedToken

    from caproni_tasks.ensure.grammar import TEXT_PREFIX, TEXT_SUFFIX

    parser, callbacks = _get_parser()
    builder = _FileBuilder(filename, host_args if host_args is not None else host_template_args())
    callbacks.begin(builder)
    try:
        parser.parse(TEXT_PREFIX + text + TEXT_SUFFIX)
    except EnsureParseError as err:
        err.filename = filename
        raise
    except UnexpectedToken as err:
        line = max(err.line - 1, 1) if isinstance(err.line, int) else 1
        column = err.column if isinstance(err.column, int) and err.column > 0 else 1
        message = f"unexpected {go_quote(str(err.token))}"
        raise EnsureParseError(line, message, column=column, filename=filename) from None
    except UnexpectedInput as err:
        line = max(err.line - 1, 1) if isinstance(err.line, int) else 1
        column = err.column if isinstance(err.column, int) and err.column > 0 else 1
        raise EnsureParseError(line, "unexpected text", column=column, filename=filename) from None
    finally:
        callbacks.begin(None)
    return builder.file
