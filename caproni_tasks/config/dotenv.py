"""``env_file:``: environment variables from a dotenv file.

The format, as docker compose, honcho and python-dotenv read it for the common cases:

- ``KEY=VALUE`` per line; blank lines and lines starting with ``#`` are skipped;
  ``export KEY=VALUE`` is the same as ``KEY=VALUE``;
- an unquoted value is trimmed, and `` #`` (a space, then ``#``) starts a comment;
- ``'single quotes'`` keep everything literally; ``"double quotes"`` understand
  ``\\n``, ``\\t``, ``\\r``, ``\\"``, ``\\\\`` and ``\\$``; a quoted value may be
  followed by spaces and a comment only;
- no ``${VAR}`` interpolation: values are used as written.

Mistakes are `DotenvError` with the file, line and column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DotenvError", "load_env_files", "parse_dotenv"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
#: An env file is small; anything far larger is a mistake.
MAX_BYTES = 1024 * 1024


class DotenvError(ValueError):
    """A mistake in an env file, at ``file:line:column``."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column
        self.message = message


def parse_dotenv(text: str, file: str = "<env file>") -> dict[str, str]:
    """The variables of a dotenv text, in order (a later line wins)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        if line.startswith("export ") or line.startswith("export\t"):
            rest = line[len("export") :].lstrip()
            indent += len(line) - len(rest)
            line = rest
        key, equals, value = line.partition("=")
        key = key.rstrip()
        if not equals:
            raise DotenvError(
                file, number, indent + 1, f"expected KEY=VALUE; found {line!r} (no '=')"
            )
        if not _KEY.fullmatch(key):
            raise DotenvError(
                file,
                number,
                indent + 1,
                f"{key!r} is not a variable name (letters, digits, '_', '.', '-'; "
                "not starting with a digit)",
            )
        column = indent + len(line) - len(value.lstrip()) + 1
        values[key] = _value(value.strip(), file, number, column)
    return values


def _value(text: str, file: str, line: int, column: int) -> str:
    if not text:
        return ""
    quote = text[0]
    if quote not in "'\"":
        comment = re.search(r"\s#", text)
        return (text[: comment.start()] if comment else text).rstrip()
    out: list[str] = []
    index = 1
    while index < len(text):
        ch = text[index]
        if ch == quote:
            rest = text[index + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise DotenvError(
                    file,
                    line,
                    column + index + 1,
                    f"unexpected {rest!r} after the closing quote (quote the whole value)",
                )
            return "".join(out)
        if ch == "\\" and quote == '"' and index + 1 < len(text):
            following = text[index + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        out.append(ch)
        index += 1
    raise DotenvError(file, line, column, f"unclosed {quote} quote: close it on the same line")


def load_env_files(paths: Iterable[Path]) -> dict[str, str]:
    """The variables of every file of ``paths``, in order (a later file wins).
    `DotenvError` for a mistake; `OSError` when a file cannot be read."""
    values: dict[str, str] = {}
    for path in paths:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise DotenvError(str(path), 1, 1, "too large for an env file (over 1 MiB)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DotenvError(str(path), line, 1, "not UTF-8 text") from None
        if "\x00" in text:
            raise DotenvError(str(path), text[: text.index("\x00")].count("\n") + 1, 1, "NUL byte")
        values.update(parse_dotenv(text.removeprefix("\ufeff"), str(path)))
    return values
