"""The plain values shared by the ensure model and the resolver.

`PackageDef` (one package line), `ResolvedFile` (what a file means for one platform),
the paranoid modes, the `Resolver` callback type and the canonical text layout live
here, below both `caproni_tasks.ensure.model` and `caproni_tasks.ensure.resolve`, so
each of those imports them at top level and neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from caproni_tasks.ensure.validation import Pin

__all__ = [
    "NOT_PARANOID",
    "PARANOID_MODES",
    "PackageDef",
    "Resolvable",
    "ResolvedFile",
    "Resolver",
    "canonical_text",
    "settings_section",
]

#: Accepted ``$ParanoidMode`` values (case-sensitive); an unset mode means the first.
PARANOID_MODES = ("NotParanoid", "CheckPresence", "CheckIntegrity")
NOT_PARANOID = PARANOID_MODES[0]

#: ``resolver(package, version) -> Pin``; raise any exception to report a failure.
Resolver = Callable[[str, str], Pin]


@dataclass(frozen=True, slots=True)
class PackageDef:
    """One package line: a name template, a version, and the line it came from.

    The line is not part of the value: two definitions are equal when they say the
    same thing wherever they stand.
    """

    template: str
    version: str
    line: int = field(default=0, compare=False)


class Resolvable(Protocol):
    """What resolving reads from a parsed file (`caproni_tasks.ensure.EnsureFile`)."""

    @property
    def service_url(self) -> str: ...

    @property
    def paranoid_mode(self) -> str: ...

    @property
    def override_install_mode(self) -> str: ...

    @property
    def verified_platforms(self) -> Sequence[tuple[str, str]]: ...

    @property
    def packages_by_subdir(self) -> Mapping[str, Sequence[PackageDef]]: ...

    @property
    def subdir_lines(self) -> Mapping[str, int]: ...


@dataclass
class ResolvedFile:
    """An ensure file resolved for one platform: pins per expanded subdir."""

    service_url: str = ""
    paranoid_mode: str = NOT_PARANOID
    override_install_mode: str = ""
    packages_by_subdir: dict[str, list[Pin]] = field(default_factory=dict)

    def serialize(self) -> str:
        settings = [
            ("$ServiceURL", self.service_url),
            ("$ParanoidMode", "" if self.paranoid_mode == NOT_PARANOID else self.paranoid_mode),
            ("$OverrideInstallMode", self.override_install_mode),
        ]
        rows = {
            subdir: [(p.package, p.instance_id) for p in pins]
            for subdir, pins in self.packages_by_subdir.items()
        }
        return canonical_text([settings_section(settings)], rows)

    def pins(self) -> Iterable[tuple[str, Pin]]:
        """Every (subdir, pin) pair, subdirs in byte order."""
        for subdir in sorted(self.packages_by_subdir):
            for pin in self.packages_by_subdir[subdir]:
                yield subdir, pin


def _first(row: tuple[str, str]) -> str:
    return row[0]


def settings_section(settings: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{key} {value}\n" for key, value in settings if value)


def canonical_text(
    heads: Sequence[str], rows_by_subdir: Mapping[str, list[tuple[str, str]]]
) -> str:
    """Head sections, then one section per subdir in byte order, a blank line apart.

    Within a subdir rows are sorted (stably) by name and the name is left-justified to
    the longest name plus one, then a space and the version. As in the client, the
    longest name is measured in UTF-8 bytes, so a non-ASCII name pads a little wider.
    """
    parts = [head for head in heads if head]
    for subdir in sorted(rows_by_subdir):
        rows = sorted(rows_by_subdir[subdir], key=_first)
        if not rows:
            continue
        # The client measures the longest name in UTF-8 bytes but pads by characters.
        width = max(len(name.encode("utf-8", "surrogatepass")) for name, _ in rows) + 1
        header = f"@Subdir {subdir}\n" if subdir else ""
        parts.append(header + "".join(f"{name:<{width}} {version}\n" for name, version in rows))
    return "\n".join(parts)
