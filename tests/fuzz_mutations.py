"""Byte-level mutations of valid files for the fuzz probes (hypothesis strategies).

A mutation keeps most of a real file, so the input gets past the first line and
exercises the later stages (validation, references), and adds what real files break
with: control characters, NUL, invalid UTF-8, a byte order mark, tabs, CR, deep
brackets, duplicated or swapped lines, truncation.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Bytes worth inserting: controls (with NUL and DEL), YAML/ensure indicators, invalid
#: UTF-8 lead/continuation bytes, a BOM, whitespace of several kinds.
INTERESTING = [
    b"\x00",
    b"\x05",
    b"\x1b",
    b"\x7f",
    b"\x85",
    b"\xc2\x85",
    b"\xc2\x9b",
    b"\xe9",
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\xef\xbf\xbe",
    b"\t",
    b"\r",
    b"\r\n",
    b"\n",
    b"\n\n",
    b" ",
    b"\xe2\x80\xa8",
    b":",
    b": ",
    b"- ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"[" * 80,
    b"{a: " * 60,
    b"&a ",
    b"*a",
    b"!!str ",
    b"? ",
    b"|",
    b">",
    b"'",
    b'"',
    b"#",
    b"%",
    b"@",
    b"$",
    b"${",
    b"}",
    b"=",
    b",",
    b"---\n",
    b"...\n",
]


@st.composite
def _mutation(draw: st.DrawFn, size: int) -> tuple[str, int, int, bytes]:
    # Mostly small edits: truncation and raw bytes (often invalid UTF-8) stop a file at
    # its first stage, so they are drawn less often.
    kind = draw(st.sampled_from([*["insert", "replace", "delete"] * 3, "dup-line", "swap-lines"]))
    if draw(st.integers(0, 19)) == 0:
        kind = "truncate"
    pos = draw(st.integers(0, max(size, 0)))
    length = draw(st.integers(0, 24))
    payload = draw(
        st.one_of(
            st.sampled_from(INTERESTING),
            st.text(min_size=1, max_size=4).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.binary(min_size=1, max_size=4),
        )
    )
    return kind, pos, length, payload


def apply(base: bytes, mutation: tuple[str, int, int, bytes]) -> bytes:
    kind, pos, length, payload = mutation
    pos = min(pos, len(base))
    if kind == "insert":
        return base[:pos] + payload + base[pos:]
    if kind == "replace":
        return base[:pos] + payload + base[pos + max(length, 1) :]
    if kind == "delete":
        return base[:pos] + base[pos + length :]
    if kind == "truncate":
        return base[:pos]
    lines = base.split(b"\n")
    if not lines:
        return base
    i = pos % len(lines)
    j = (pos + length) % len(lines)
    if kind == "dup-line":
        lines.insert(j, lines[i])
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes], max_mutations: int = 4) -> bytes:
    """One of *bases* with 1..max_mutations mutations applied."""
    data = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(1, max_mutations))):
        data = apply(data, draw(_mutation(len(data))))
    return data


def fuzz_settings(max_examples: int) -> settings:
    """The probes' hypothesis settings: bounded, no deadline (a loaded CI machine),
    module-scoped fixtures allowed."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
