"""What a package file may unpack to (decompression bombs), in a module of its own so a
task can build the limits from settings without importing the package reader."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PackageLimits", "human_size"]


@dataclass(frozen=True)
class PackageLimits:
    """What a package file may unpack to, checked before anything is written.

    A zip can declare gigabytes that compress to almost nothing (a decompression bomb).
    The defaults are far beyond any real tool package (toolchains compress 2-10x);
    raise them with the ``caproni.max_package_size`` / ``max_compression_ratio``
    settings for a genuine outlier. The ratio is only checked past ``ratio_floor``
    bytes, since small files of zeros compress a thousandfold and harm no one.
    """

    max_total_size: int = 32 << 30
    max_ratio: float = 200.0
    ratio_floor: int = 128 << 20

    def problem(self, declared: int, compressed: int, what: str) -> str | None:
        """Why ``declared`` bytes unpacked from ``compressed`` bytes are refused, if so."""
        if declared > self.max_total_size:
            return (
                f"{what} would unpack to {human_size(declared)}, more than the limit of "
                f"{human_size(self.max_total_size)} (caproni.max_package_size)"
            )
        ratio = declared / max(compressed, 1)
        if declared > self.ratio_floor and ratio > self.max_ratio:
            return (
                f"{what} would unpack {human_size(compressed)} to {human_size(declared)} "
                f"(ratio {ratio:.0f}:1, limit {self.max_ratio:g}:1, "
                "caproni.max_compression_ratio): refused as a likely decompression bomb"
            )
        return None


def human_size(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.0 GiB``: sizes in messages and listings."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
