"""Regular expressions as mirrord reads them: Rust's ``regex`` crate syntax.

mirrord compiles ``feature.fs`` patterns and ``mapping`` keys with Rust's ``regex``
crate, whose syntax is close to Python's ``re`` but not the same. `check` finds what
Rust rejects (look-around, backreferences, atomic groups, possessive repeats,
``(?#…)`` comments, ``\\Z``, a bare ``{``) and translates what only Rust accepts
(``(?<name>…)``, ``\\z``, ``\\x{…}``, ``\\p{…}``, the ``U``/``R`` flags, nested
classes) before letting Python's parser find the ordinary mistakes (unbalanced
parentheses, a repeat of nothing, a reversed range).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["RegexInfo", "check", "replacement_problems"]

_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\[\]]*")
_COUNTED = re.compile(r"\{\s*\d+\s*(,\s*\d*\s*)?\}")
_REF = re.compile(r"\$(\$|\{([^}]*)\}|([A-Za-z0-9_]+))")


@dataclass
class RegexInfo:
    """A pattern's problems (empty: Rust accepts it) and its capture groups."""

    problems: list[str] = field(default_factory=list)
    groups: int = 0
    names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(pattern: str) -> RegexInfo:
    info = RegexInfo()
    translated = _translate(pattern, info)
    if info.problems:
        return info
    try:
        compiled = re.compile(translated)
    except re.error as exc:
        info.problems.append(str(exc))
        return info
    info.groups = compiled.groups
    return info


def _translate(pattern: str, info: RegexInfo) -> str:
    out: list[str] = []
    names: dict[str, str] = {}
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            text, i = _escape(pattern, i, info, in_class=False)
            out.append(text)
            continue
        if ch == "[":
            text, i = _char_class(pattern, i, info)
            out.append(text)
            continue
        if ch == "(":
            text, i = _group_open(pattern, i, info, names)
            out.append(text)
            continue
        if ch == "{":
            match = _COUNTED.match(pattern, i)
            if match is None:
                info.problems.append(
                    f"a '{{' at offset {i} starts no repetition such as {{2}} or {{1,3}}; "
                    "Rust needs a literal brace escaped as \\{"
                )
                return ""
            end = match.end()
            if end < n and pattern[end] == "+":
                info.problems.append(f"possessive repetition at offset {end} is not Rust syntax")
                return ""
            out.append(match.group(0).replace(" ", ""))
            i = end
            continue
        if ch in "*+?" and i + 1 < n and pattern[i + 1] == "+":
            info.problems.append(f"possessive repetition at offset {i} is not Rust syntax")
            return ""
        out.append(ch)
        i += 1
    info.names = list(names)
    return "".join(out)


def _escape(pattern: str, i: int, info: RegexInfo, *, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(pattern):
        info.problems.append("the pattern ends with a lone backslash")
        return "", len(pattern)
    ch = pattern[i + 1]
    if ch.isdigit():
        info.problems.append(
            f"\\{ch} at offset {i}: Rust regexes have no backreferences or octal escapes"
        )
        return "", len(pattern)
    if ch == "Z":
        info.problems.append(f"\\Z at offset {i} is not Rust syntax; use \\z for end of text")
        return "", len(pattern)
    if ch == "z":
        return "\\Z", i + 2
    if ch in "<>" and not in_class:
        return "\\b", i + 2
    if ch == "b" and not in_class and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 2)
        if end < 0:
            info.problems.append(f"unclosed \\b{{…}} at offset {i}")
            return "", len(pattern)
        return "\\b", end + 1
    if ch in "pP":
        if pattern.startswith("{", i + 2):
            end = pattern.find("}", i + 2)
            if end < 0:
                info.problems.append(f"unclosed \\{ch}{{…}} at offset {i}")
                return "", len(pattern)
            return "\\w", end + 1
        if i + 2 >= len(pattern):
            info.problems.append(f"\\{ch} at offset {i} names no Unicode class")
            return "", len(pattern)
        return "\\w", i + 3
    if ch == "x" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 2)
        digits = pattern[i + 3 : end] if end > 0 else ""
        if end < 0 or not re.fullmatch(r"[0-9A-Fa-f]{1,8}", digits) or int(digits, 16) > 0x10FFFF:
            info.problems.append(f"invalid \\x{{…}} escape at offset {i}")
            return "", len(pattern)
        return f"\\U{int(digits, 16):08x}", end + 1
    if ch == "u" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 2)
        digits = pattern[i + 3 : end] if end > 0 else ""
        if end < 0 or not re.fullmatch(r"[0-9A-Fa-f]{1,8}", digits) or int(digits, 16) > 0x10FFFF:
            info.problems.append(f"invalid \\u{{…}} escape at offset {i}")
            return "", len(pattern)
        return f"\\U{int(digits, 16):08x}", end + 1
    if ch == "e":
        info.problems.append(f"\\e at offset {i} is not Rust syntax")
        return "", len(pattern)
    return pattern[i : i + 2], i + 2


def _char_class(pattern: str, i: int, info: RegexInfo) -> tuple[str, int]:
    """A bracketed class, nested classes and set operations allowed (Rust); checked
    for closure and reversed ranges; replaced by an equivalent-enough Python class."""
    depth = 0
    j = i
    n = len(pattern)
    members: list[str] = []
    while j < n:
        ch = pattern[j]
        if ch == "\\":
            text, j = _escape(pattern, j, info, in_class=True)
            if info.problems:
                return "", n
            members.append(text)
            continue
        if ch == "[":
            if pattern.startswith("[:", j):
                end = pattern.find(":]", j + 2)
                if end > 0:
                    members.append("a")
                    j = end + 2
                    continue
            depth += 1
            j += 1
            if pattern.startswith("^", j):
                j += 1
            if pattern.startswith("]", j):  # a leading ']' is a literal
                members.append("\\]")
                j += 1
            continue
        if ch == "]":
            depth -= 1
            j += 1
            if depth == 0:
                body = "".join(members) or "a"
                return f"[{body}]", j
            continue
        if ch == "-" and members and j + 1 < n and pattern[j + 1] not in "]-":
            low = members[-1]
            nxt = pattern[j + 1]
            if nxt == "\\":
                high, k = _escape(pattern, j + 1, info, in_class=True)
            elif nxt == "[":
                members.append("\\-")
                j += 1
                continue
            else:
                high, k = nxt, j + 2
            if len(low) == 1 and len(high) == 1 and ord(high) < ord(low):
                info.problems.append(f"reversed range {low}-{high} in a character class")
                return "", n
            if len(low) == 1 and len(high) == 1:
                members[-1] = f"{re.escape(low)}-{re.escape(high)}"
            else:
                members.append(re.escape(high) if len(high) == 1 else high)
            j = k
            continue
        if ch in "&~-" and pattern.startswith(ch * 2, j):
            j += 2  # set operations: && (intersection), -- (difference), ~~ (symmetric)
            continue
        members.append(re.escape(ch))
        j += 1
    info.problems.append(f"unclosed character class starting at offset {i}")
    return "", n


def _group_open(pattern: str, i: int, info: RegexInfo, names: dict[str, str]) -> tuple[str, int]:
    if not pattern.startswith("(?", i):
        return "(", i + 1
    rest = pattern[i + 2 :]
    for prefix, what in (
        ("=", "look-ahead"),
        ("!", "negative look-ahead"),
        ("<=", "look-behind"),
        ("<!", "negative look-behind"),
        (">", "atomic group"),
        ("#", "comment group"),
        ("P=", "backreference"),
        ("(", "conditional"),
    ):
        if rest.startswith(prefix):
            info.problems.append(f"{what} (?{prefix}…) at offset {i} is not supported by Rust")
            return "", len(pattern)
    if rest.startswith(("P<", "<")):
        start = i + 2 + (2 if rest.startswith("P<") else 1)
        end = pattern.find(">", start)
        name = pattern[start:end] if end > 0 else ""
        if end < 0 or not _GROUP_NAME.fullmatch(name):
            info.problems.append(f"invalid group name at offset {i}")
            return "", len(pattern)
        if name in names:
            info.problems.append(f"duplicate group name {name!r}")
            return "", len(pattern)
        python_name = f"g{len(names)}_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
        names[name] = python_name
        return f"(?P<{python_name}>", end + 1
    # Flags: (?flags) or (?flags:…); Rust knows i m s U u x R.
    match = re.match(r"([imsUuxR]*)(-([imsUuxR]*))?([:)])", rest)
    if match is None:
        info.problems.append(f"unknown group syntax at offset {i}")
        return "", len(pattern)
    if match.group(2) is not None and not match.group(3) and match.group(4) == ")":
        info.problems.append(f"empty negated flag set at offset {i}")
        return "", len(pattern)
    on = "".join(f for f in match.group(1) if f in "imsx")
    off = "".join(f for f in (match.group(3) or "") if f in "imsx")
    end = i + 2 + match.end()
    if match.group(4) == ")":
        # A flag group for the rest of the pattern: no effect on its validity, and
        # Python would want it at the very start only.
        return "", end
    flags = on + (f"-{off}" if off else "")
    return (f"(?{flags}:" if flags else "(?:"), end


def replacement_problems(replacement: str, info: RegexInfo) -> list[str]:
    """References in a ``mapping`` replacement (``$1``, ``${name}``) that name no group
    of its pattern: Rust replaces them with nothing. Like Rust, ``$name`` takes the
    longest run of letters, digits and ``_`` (so ``$1a`` means group ``1a``)."""
    problems: list[str] = []
    for match in _REF.finditer(replacement):
        if match.group(1) == "$":
            continue
        ref = match.group(2) if match.group(2) is not None else match.group(3)
        if ref.isdigit():
            if int(ref) > info.groups:
                problems.append(
                    f"${ref} refers to group {ref}, but the pattern has {info.groups}; "
                    "it expands to nothing"
                )
        elif ref not in info.names:
            hint = ""
            head = re.match(r"\d+", ref)
            if head and match.group(3) is not None:
                digits = head.group(0)
                hint = f" (write ${{{digits}}}{ref[len(digits) :]} for group {digits} and text)"
            problems.append(f"${ref} names no group of the pattern; it expands to nothing{hint}")
    return problems
