"""Go-style durations (``300ms``, ``1m``, ``1h30m``, ``1.5s``, ``0``) as seconds.

URLs shared with Go programs use this syntax for ``wait``; the grammar and the wording
of errors follow Go's ``time.ParseDuration``.
"""

from __future__ import annotations

import math
import re

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
#: Go's durations are int64 nanoseconds: anything longer is "invalid duration" there too.
MAX_GO_DURATION = (2**63 - 1) * 1e-9
_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")


def parse_duration(text: str) -> float:
    """Seconds in the Go duration *text*; ValueError naming the problem otherwise."""
    original = text
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f'time: invalid duration "{original}"')
        number, unit = match.groups()
        if not unit:
            raise ValueError(f'time: missing unit in duration "{original}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{original}"')
        total += float(number) * _UNITS[unit]
        pos = match.end()
    if not math.isfinite(total) or total > MAX_GO_DURATION:
        raise ValueError(f'time: invalid duration "{original}"')
    return sign * total


def format_duration(seconds: float) -> str:
    """A compact Go-style rendering (``30s``, ``250ms``, ``1m30s``) for messages."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if secs or not (hours or minutes):
        parts.append(f"{secs:g}s")
    return "".join(parts)
