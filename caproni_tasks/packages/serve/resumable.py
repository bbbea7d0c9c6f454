"""The Cloud Storage resumable-upload headers an upload URL speaks.

A client PUTs chunks with ``Content-Range: bytes <first>-<last>/<total>`` (``*`` for
a total not known yet), asks how far the server got with an empty PUT carrying
``Content-Range: bytes */<total>``, and hears 308 + ``Range: bytes=0-<last>`` (the bytes
kept so far; no ``Range`` when none) until the last byte arrives, then 200.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Chunk", "ContentRangeError", "StatusQuery", "parse_content_range", "range_header"]

_CHUNK_RE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")
_QUERY_RE = re.compile(r"bytes \*/(\d{1,19}|\*)")


class ContentRangeError(ValueError):
    pass


@dataclass(frozen=True)
class Chunk:
    first: int  # offset of the body's first byte
    last: int  # offset of its last byte (inclusive)
    total: int | None  # the object's size, when the client knows it

    @property
    def length(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class StatusQuery:
    total: int | None


def parse_content_range(header: str | None, body_length: int | None) -> Chunk | StatusQuery:
    """The meaning of a PUT's ``Content-Range`` (absent: the whole object in one body of
    ``body_length`` bytes)."""
    if header is None:
        if body_length is None:
            raise ContentRangeError("a PUT needs Content-Range or Content-Length")
        if body_length == 0:
            return StatusQuery(0)
        return Chunk(0, body_length - 1, body_length)
    text = header.strip()
    query = _QUERY_RE.fullmatch(text)
    if query is not None:
        total = query.group(1)
        return StatusQuery(None if total == "*" else int(total))
    match = _CHUNK_RE.fullmatch(text)
    if match is None:
        raise ContentRangeError(
            f"malformed Content-Range {header!r} (expected 'bytes FIRST-LAST/TOTAL', "
            "'bytes FIRST-LAST/*' or 'bytes */TOTAL')"
        )
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first:
        raise ContentRangeError(f"Content-Range {header!r} ends before it starts")
    if total is not None and last >= total:
        raise ContentRangeError(f"Content-Range {header!r} goes past the total size")
    chunk = Chunk(first, last, total)
    if body_length is not None and body_length != chunk.length:
        raise ContentRangeError(
            f"Content-Range {header!r} announces {chunk.length} bytes, "
            f"Content-Length is {body_length}"
        )
    return chunk


def range_header(received: int) -> dict[str, str]:
    """The ``Range`` header of a 308 answer once ``received`` bytes are kept."""
    return {"Range": f"bytes=0-{received - 1}"} if received > 0 else {}
