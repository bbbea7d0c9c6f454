"""The values of the ensure-file language and their canonical text form.

`EnsureFile` is a parsed file, still with templates and versions; `ResolvedFile` is
what it means for one platform: pins per expanded subdir. Both serialize to the
canonical form of the original client (comments are not kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from caproni_tasks.ensure.resolve import resolve_file
from caproni_tasks.ensure.values import (
    NOT_PARANOID,
    PARANOID_MODES,
    PackageDef,
    ResolvedFile,
    Resolver,
    canonical_text,
    settings_section,
)

__all__ = [
    "NOT_PARANOID",
    "PARANOID_MODES",
    "EnsureFile",
    "PackageDef",
    "ResolvedFile",
]


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
        return canonical_text([settings_section(settings), platforms], rows)

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
        return resolve_file(
            self, resolver, template_args=template_args, allow_duplicates=allow_duplicates
        )

    def all_packages(self) -> Iterable[tuple[str, PackageDef]]:
        """Every (raw subdir, package line) pair, subdirs in byte order."""
        for subdir in sorted(self.packages_by_subdir):
            for definition in self.packages_by_subdir[subdir]:
                yield subdir, definition


def _template_of(definition: PackageDef) -> str:
    return definition.template
