"""Go-style ``%q`` quoting, because error messages must match the original client's.

Python's `repr` differs (single quotes, other escapes), so messages that quote user
input use `go_quote` instead.
"""

from __future__ import annotations

import unicodedata

__all__ = ["go_quote"]

_SIMPLE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}

#: Unicode categories Go's ``unicode.IsPrint`` accepts (letters, marks, numbers,
#: punctuation, symbols); the only space it accepts is U+0020.
_PRINTABLE_CATEGORY_PREFIXES = ("L", "M", "N", "P", "S")


def _is_printable(ch: str) -> bool:
    if ch == " ":
        return True
    return unicodedata.category(ch).startswith(_PRINTABLE_CATEGORY_PREFIXES)


def _escape(ch: str) -> str:
    simple = _SIMPLE_ESCAPES.get(ch)
    if simple is not None:
        return simple
    code = ord(ch)
    if code < 0x80:
        return ch if ch.isprintable() else f"\\x{code:02x}"
    # Lone surrogates cannot come from decoded UTF-8; show them as code points.
    if _is_printable(ch) and not 0xD800 <= code <= 0xDFFF:
        return ch
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(value: str) -> str:
    """``value`` in double quotes, escaped exactly like Go's ``strconv.Quote``."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return '"' + "".join(_escape(ch) for ch in value) + '"'
