"""The canonical form of an ensure file that keeps its comments and blank-line groups.

`EnsureFile.serialize` writes exactly what the cipd client writes, which drops every
comment. `format_keeping_comments` writes the same canonical form (settings in fixed
order, one ``$VerifiedPlatform`` per line, subdirs in byte order, packages sorted and
aligned per subdir) but keeps:

- each run of comment lines attached to the statement it precedes (it moves with
  that statement when sorting moves it), and a blank line after a run when there
  was one;
- comments above the first statement that a blank line separates from it, as the
  file's header (licence headers stay on top);
- blank-line groups of package lines inside a subdir: each group is sorted on its
  own and groups keep their order, one blank line apart; when only the first line
  of a group has comments, they head the group and stay on top of it;
- comments after the last statement, at the end.

Comment lines are trimmed; runs of blank lines become one. Comments of a statement
the canonical form does not write (``$ParanoidMode NotParanoid``, a repeated
``$ResolvedVersions``, an ``@Subdir`` with no packages) go with the next statement
written. The result parses to the same `EnsureFile` and formats to itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from caproni_tasks.ensure.parser import WHITESPACE, parse, split_statement
from caproni_tasks.ensure.values import NOT_PARANOID

__all__ = ["format_keeping_comments"]

_FIELDS_RE = re.compile(f"[^{re.escape(WHITESPACE)}]+")

#: Settings in the order the canonical form writes them.
_SETTING_ORDER = ("$serviceurl", "$paranoidmode", "$resolvedversions", "$overrideinstallmode")
_SETTING_NAMES = {
    "$serviceurl": "$ServiceURL",
    "$paranoidmode": "$ParanoidMode",
    "$resolvedversions": "$ResolvedVersions",
    "$overrideinstallmode": "$OverrideInstallMode",
}


@dataclass
class _Block:
    """A run of comment lines (trimmed), and whether a blank line followed it."""

    lines: list[str]
    blank_after: bool = False


@dataclass
class _Statement:
    kind: str  # "setting", "platform", "subdir" or "package"
    key: str  # lower-cased setting key, subdir value, or package template
    value: str  # setting value, or package version
    blocks: list[_Block]
    gap: bool  # a blank line between the previous statement and this one's comments


@dataclass
class _Group:
    head: list[_Block] = field(default_factory=list)
    packages: list[_Statement] = field(default_factory=list)


@dataclass
class _Section:
    header: list[_Block] = field(default_factory=list)
    groups: list[_Group] = field(default_factory=list)


def _scan(text: str) -> tuple[list[_Statement], list[_Block], bool]:
    """Statements with their comments, the comments after the last one, and whether a
    blank line separates those trailing comments from the last statement."""
    statements: list[_Statement] = []
    pending: list[_Block] = []
    gap = False
    open_block = False
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        _, head, _, rest = split_statement(line)
        if not head:
            if open_block:
                pending[-1].blank_after = True
                open_block = False
            elif not pending:
                gap = True
            continue
        if head.startswith("#"):
            comment = line.strip(WHITESPACE)
            if open_block:
                pending[-1].lines.append(comment)
            else:
                pending.append(_Block([comment]))
                open_block = True
            continue
        key = head.replace("\u0130", "i").lower()
        if head.startswith("$"):
            kind = "platform" if key == "$verifiedplatform" else "setting"
            statements.append(_Statement(kind, key, rest, pending, gap))
        elif head.startswith("@"):
            statements.append(_Statement("subdir", rest, "", pending, gap))
        else:
            statements.append(_Statement("package", head, rest, pending, gap))
        pending, gap, open_block = [], False, False
    return statements, pending, gap


def _emit_blocks(out: list[str], blocks: list[_Block]) -> None:
    for block in blocks:
        out.extend(block.lines)
        if block.blank_after:
            out.append("")


def format_keeping_comments(text: str, *, filename: str | None = None) -> str:
    """The canonical text of an ensure file, with its comments and package groups kept.

    Raises `EnsureParseError` for a file that does not parse (nothing is formatted).
    """
    parsed = parse(text, filename=filename)
    statements, trailing, trailing_gap = _scan(text)
    out: list[str] = []
    carry: list[_Block] = []

    # The file header: comments above the first statement, a blank line apart from it.
    if statements and statements[0].blocks:
        first = statements[0]
        header = [b for b in first.blocks if b.blank_after]
        first.blocks = [b for b in first.blocks if not b.blank_after]
        _emit_blocks(out, header)

    written = {
        "$serviceurl": parsed.service_url,
        "$paranoidmode": "" if parsed.paranoid_mode == NOT_PARANOID else parsed.paranoid_mode,
        "$resolvedversions": parsed.resolved_versions,
        "$overrideinstallmode": parsed.override_install_mode,
    }
    settings = [s for s in statements if s.kind == "setting"]
    any_setting = False
    for key in _SETTING_ORDER:
        for statement in settings:
            if statement.key == key:
                carry += statement.blocks
        if written[key]:
            _emit_blocks(out, carry)
            carry = []
            out.append(f"{_SETTING_NAMES[key]} {written[key]}")
            any_setting = True
    if any_setting:
        out.append("")

    any_platform = False
    for statement in statements:
        if statement.kind != "platform":
            continue
        carry += statement.blocks
        for platform in _FIELDS_RE.findall(statement.value):
            _emit_blocks(out, carry)
            carry = []
            out.append(f"$VerifiedPlatform {platform}")
            any_platform = True
    if any_platform:
        out.append("")

    sections: dict[str, _Section] = {}
    current = sections.setdefault("", _Section())
    group: _Group | None = None
    pending_head: list[_Block] = []
    for statement in statements:
        if statement.kind == "subdir":
            current = sections.setdefault(statement.key, _Section())
            if statement.key and not current.groups and not current.header:
                current.header = statement.blocks
            else:
                pending_head += statement.blocks
            group = None
        elif statement.kind == "package":
            if group is None or (statement.gap and group.packages):
                group = _Group(head=pending_head)
                pending_head = []
                current.groups.append(group)
            group.packages.append(statement)
    leftover = pending_head

    first_section = True
    for key in sorted(sections):
        section = sections[key]
        groups = [g for g in section.groups if g.packages]
        if not groups:
            carry += section.header + [b for g in section.groups for b in g.head]
            continue
        if not first_section and out and out[-1] != "":
            out.append("")
        first_section = False
        width = max(len(p.key.encode("utf-8", "surrogatepass")) for g in groups for p in g.packages)
        if key:
            _emit_blocks(out, carry + section.header)
            carry = []
            out.append(f"@Subdir {key}")
        for index, one in enumerate(groups):
            if index:
                out.append("")
            carry += one.head
            first, others = one.packages[0], one.packages[1:]
            if first.blocks and not any(p.blocks for p in others):
                # Only the group's first line has comments: they head the whole group.
                carry += first.blocks
                first.blocks = []
            for package in sorted(one.packages, key=lambda p: p.key):
                _emit_blocks(out, carry + package.blocks)
                carry = []
                out.append(f"{package.key:<{width + 1}} {package.value}")

    carry += leftover + trailing
    if carry:
        if trailing_gap and out and out[-1] != "":
            out.append("")
        _emit_blocks(out, carry)

    lines: list[str] = []
    for line in out:
        if line == "" and (not lines or lines[-1] == ""):
            continue
        lines.append(line)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""
