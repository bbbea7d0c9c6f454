"""The template language of package names and ``@Subdir`` values.

``${name}`` substitutes a variable; ``${name=v1,v2}`` substitutes it only when its
value is listed, and otherwise the whole template does not apply to the platform
(`TemplateSkipped`). The syntax is documented by the ``template`` rule of
``grammar/ensure.lark``; `VARIABLE_RE` is its ``VARIABLE_REF`` terminal with the
name and choices captured (a test keeps the two in step).
"""

from __future__ import annotations

import platform
import re
import struct
import sys
from collections.abc import Mapping

from caproni_tasks.ensure.errors import EnsureFileError
from caproni_tasks.ensure.quoting import go_quote

__all__ = [
    "ARCH_BY_MACHINE",
    "VARIABLE_RE",
    "TemplateError",
    "TemplateSkipped",
    "expand_template",
    "host_arch",
    "host_os",
    "host_template_args",
    "platform_template_args",
]

VARIABLE_RE = re.compile(r"\$\{([^=}]*)(?:=([^}]*))?\}")


class TemplateSkipped(Exception):
    """The template does not apply to the current system (a condition did not match)."""

    def __init__(self) -> None:
        super().__init__("package template does not apply to the current system")


class TemplateError(EnsureFileError, ValueError):
    """A template that cannot be expanded; ``offset`` is where in it the problem is."""

    def __init__(self, message: str, *, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def expand_template(template: str, variables: Mapping[str, str], *, validate: bool = False) -> str:
    """Expand ``template`` with ``variables`` in one left-to-right pass.

    In ``validate`` mode a conditional variable reference always substitutes the variable's
    value and never skips: that is how ``@Subdir`` values are checked at parse time.
    A skip wins over errors; of several errors the last one is raised.
    """
    if "$" not in template:
        return template
    if "=" not in template:
        quick = _expand_plain(template, variables)
        if quick is not None:
            return quick
    return _expand(template, variables, validate=validate)


def _expand_plain(template: str, variables: Mapping[str, str]) -> str | None:
    """The common case fast: only ``${name}`` references, all known, nothing left over.

    None whenever the full algorithm is needed (to raise the right error). Each
    ``${`` must open a reference to a known variable whose value holds no ``$``,
    and no other ``$`` may appear, so the result equals one pass of `_expand`:
    substituted values are never scanned again.
    """
    head, *references = template.split("${")
    if "$" in head:
        return None
    pieces = [head]
    for reference in references:
        name, closed, tail = reference.partition("}")
        if not closed or "$" in tail:
            return None
        value = variables.get(name)
        if value is None or "$" in value:
            return None
        pieces.append(value)
        pieces.append(tail)
    return "".join(pieces)


def _expand(template: str, variables: Mapping[str, str], *, validate: bool) -> str:
    """The reference algorithm: one left-to-right pass over the references."""
    skipped = False
    error: TemplateError | None = None
    pieces: list[str] = []
    last = 0
    for match in VARIABLE_RE.finditer(template):
        start, end = match.span()
        pieces.append(template[last:start])
        last = end
        name, choices = match.groups()
        value = variables.get(name)
        if value is None:
            error = TemplateError(f"unknown variable {go_quote(template[start:end])}", offset=start)
            pieces.append(template[start:end])
            continue
        if choices is not None and not validate and value not in choices.split(","):
            skipped = True
        pieces.append(value)
    if skipped:
        raise TemplateSkipped()
    if error is not None:
        raise error
    pieces.append(template[last:])
    result = "".join(pieces)
    if "$" in result:
        raise TemplateError(
            f"unable to process some variables in {go_quote(template)}",
            offset=_stray_dollar(template),
        )
    return result


def _stray_dollar(template: str) -> int:
    """Index of the first ``$`` that is not part of a variable reference."""
    covered = [m.span() for m in VARIABLE_RE.finditer(template)]
    for index, char in enumerate(template):
        if char == "$" and not any(start <= index < end for start, end in covered):
            return index
    return 0


# --- host values ---------------------------------------------------------------------

#: ``platform.machine()`` (lower-cased) -> the CIPD architecture name. The one table.
ARCH_BY_MACHINE: dict[str, str] = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "aarch64": "arm64",
    "aarch64_be": "arm64",
    "arm64": "arm64",
    "armv8b": "arm64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "i86pc": "386",
    "x86": "386",
    "armv7l": "armv7l",
    "armv7": "armv7l",
    "armv7hl": "armv7l",
    "armv8l": "armv7l",
    "armv6l": "armv6l",
    "armv6": "armv6l",
    "armv5tel": "armv6l",
    "armv5l": "armv6l",
    "arm": "armv6l",
    "loongarch64": "loong64",
    "loong64": "loong64",
    "mips": "mips",
    "mipsel": "mipsle",
    "mipsle": "mipsle",
    "mips64": "mips64",
    "mips64el": "mips64le",
    "mips64le": "mips64le",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390x": "s390x",
}

#: 64-bit machines seen from a 32-bit interpreter: the interpreter's architecture wins.
_ARCH_FOR_32BIT_PROCESS = {"amd64": "386", "arm64": "armv7l"}

_OS_BY_PLATFORM_PREFIX: tuple[tuple[str, str], ...] = (
    ("linux", "linux"),
    ("darwin", "mac"),
    ("win32", "windows"),
    ("cygwin", "windows"),
    ("msys", "windows"),
    ("freebsd", "freebsd"),
    ("netbsd", "netbsd"),
    ("openbsd", "openbsd"),
    ("dragonfly", "dragonfly"),
    ("android", "android"),
    ("ios", "ios"),
    ("aix", "aix"),
    ("illumos", "illumos"),
    ("sunos", "solaris"),
    ("plan9", "plan9"),
)


def host_os() -> str:
    """The CIPD name of this operating system (``linux``, ``mac``, ``windows``, …)."""
    for prefix, name in _OS_BY_PLATFORM_PREFIX:
        if sys.platform.startswith(prefix):
            return name
    return platform.system().lower() or sys.platform


def host_arch() -> str:
    """The CIPD name of this interpreter's architecture (``amd64``, ``arm64``, …)."""
    machine = platform.machine().lower()
    arch = ARCH_BY_MACHINE.get(machine)
    if arch is None:
        arch = "armv6l" if machine.startswith("arm") else machine
    if struct.calcsize("P") == 4:
        arch = _ARCH_FOR_32BIT_PROCESS.get(arch, arch)
    return arch


def platform_template_args(os_name: str, arch: str) -> dict[str, str]:
    """The template variables of one platform: ``os``, ``arch`` and ``platform``."""
    return {"os": os_name, "arch": arch, "platform": f"{os_name}-{arch}"}


def host_template_args() -> dict[str, str]:
    """The template variables of the machine running this code."""
    return platform_template_args(host_os(), host_arch())
