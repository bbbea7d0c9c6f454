"""The values of the ensure-file language and their canonical text form.

`EnsureFile` is a parsed file, still with templates and versions; `ResolvedFile` is
what it means for one platform: pins per expanded subdir. Both serialize to the
canonical form of the original client (comments are not kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from caproni_tasks.ensure.validation import Pin

if TYPE_CHECKING:
    from caproni_tasks.ensure.resolve import Resolver

__all__ = [
    "PARANOID_MODES",
    "EnsureFile",
    "PackageDef",
    "ResolvedFile",
]

#: Accepted ``$ParanoidMode`` values (case-sensitive); an unset mode means the first.
PARANOID_MODES = ("NotParanoid", "CheckPresence", "CheckIntegrity")
NOT_PARANOID = PARANOID_MODES[0]


@dataclass(frozen=True, slots=True)
class PackageDef:
    """One package line: a name template, a version, and the line it came from.

    The line is not part of the value: two definitions are equal when they say the
    same thing wherever they stand.
    """

    template: str
    version: str
    line: int = field(default=0, compare=False)


@dataclass(eq=False)
class EnsureFile:
    """A parsed ensure file.

    ``packages_by_subdir`` maps the raw (unexpanded) ``@Subdir`` value to its package
    lines in file order. Equality compares meaning: settings, platforms and each
    subdir's packages in canonical order, not line numbers or comments.
    """

    service_url: str = ""
    paranoid_mode: str = ""
    resolved_versions: str = ""
    override_install_mode: str = ""
    verified_platforms: list[tuple[str, str]] = field(default_factory=list)
    packages_by_subdir: dict[str, list[PackageDef]] = field(default_factory=dict)
    #: Raw subdir -> line of its first ``@Subdir`` (0 for the root), for diagnostics.
    subdir_lines: dict[str, int] = field(default_factory=dict, repr=False)
    #: The file name given to `parse`, for messages.
    filename: str | None = field(default=None, repr=False)

    def _key(self) -> tuple[object, ...]:
        return (
            self.service_url,
            "" if self.paranoid_mode == NOT_PARANOID else self.paranoid_mode,
            self.resolved_versions,
            self.override_install_mode,
            tuple(self.verified_platforms),
            tuple(
                (subdir, tuple(sorted(defs, key=_template_of)))
                for subdir, defs in sorted(self.packages_by_subdir.items())
                if defs
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnsureFile):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def serialize(self) -> str:
        """The canonical text (what ``invoke ensure.fmt`` writes)."""
        settings = [
            ("$ServiceURL", self.service_url),
            ("$ParanoidMode", "" if self.paranoid_mode == NOT_PARANOID else self.paranoid_mode),
            ("$ResolvedVersions", self.resolved_versions),
            ("$OverrideInstallMode", self.override_install_mode),
        ]
        platforms = "".join(f"$VerifiedPlatform {o}-{a}\n" for o, a in self.verified_platforms)
        rows = {
            subdir: [(d.template, d.version) for d in defs]
            for subdir, defs in self.packages_by_subdir.items()
        }
        return _canonical_text([_settings_section(settings), platforms], rows)

    def resolve(
        self,
        resolver: Resolver,
        *,
        template_args: Mapping[str, str] | None = None,
        allow_duplicates: bool = False,
    ) -> ResolvedFile:
        """Expand templates for one platform (the host by default) and pin every package.

        Raises an `EnsureFileError` worded like the original client.
        """
        from caproni_tasks.ensure.resolve import resolve_file

        return resolve_file(
            self, resolver, template_args=template_args, allow_duplicates=allow_duplicates
        )

    def all_packages(self) -> Iterable[tuple[str, PackageDef]]:
        """Every (raw subdir, package line) pair, subdirs in byte order."""
        for subdir in sorted(self.packages_by_subdir):
            for definition in self.packages_by_subdir[subdir]:
                yield subdir, definition


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
        return _canonical_text([_settings_section(settings)], rows)

    def pins(self) -> Iterable[tuple[str, Pin]]:
        """Every (subdir, pin) pair, subdirs in byte order."""
        for subdir in sorted(self.packages_by_subdir):
            for pin in self.packages_by_subdir[subdir]:
                yield subdir, pin


def _template_of(definition: PackageDef) -> str:
    return definition.template


def _first(row: tuple[str, str]) -> str:
    return row[0]


def _settings_section(settings: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{key} {value}\n" for key, value in settings if value)


def _canonical_text(
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
