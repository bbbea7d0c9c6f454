"""Error types of the ensure-file language.

Every error a user can cause derives from `EnsureFileError`, and its ``str()`` is the
exact wording of the original ``cipd`` client, so messages can be compared with it.
Errors also carry the line (and where known the column) they are about, so linters
can point at them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "MAX_LISTED_ERRORS",
    "EnsureFileError",
    "EnsureParseError",
    "MultiError",
    "PlatformError",
    "ResolveError",
    "ValidationError",
    "combine_errors",
]

#: A multi-error lists at most this many errors, then says how many it left out.
MAX_LISTED_ERRORS = 20


class EnsureFileError(Exception):
    """Base of every error caused by the content of an ensure or versions file."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class EnsureParseError(EnsureFileError):
    """A file that cannot be parsed; ``str()`` is the client's wording.

    ``message`` is the bare reason, ``line`` the 1-based physical line and ``column``
    the 1-based column of the offending token (1 when the whole line is at fault).
    """

    def __init__(
        self,
        line: int,
        message: str,
        *,
        column: int = 1,
        filename: str | None = None,
        code: str = "ensure-parse",
    ) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.filename = filename
        #: The kind of problem, for diagnostics (``unknown-setting``, ``bad-subdir``, …).
        self.code = code

    def __str__(self) -> str:
        return f"failed to parse desired state (line {self.line}): {self.message}"


class ValidationError(EnsureFileError, ValueError):
    """A package name, version, instance ID, ref, tag or subdir that breaks the rules."""


class ResolveError(EnsureFileError):
    """One problem found while resolving a parsed file.

    ``code`` names the kind of problem for diagnostics (``bad-package-name``, …);
    ``line`` is 0 when the problem is not tied to one line. ``subject`` is the raw
    text the problem is about (a template, version or subdir) so a linter can find
    its column; ``offset`` is where in that text the problem starts.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        line: int = 0,
        subject: str | None = None,
        offset: int = 0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.line = line
        self.subject = subject
        self.offset = offset


class PlatformError(EnsureFileError):
    """An error met while resolving for one ``$VerifiedPlatform``."""

    def __init__(self, platform: tuple[str, str], error: EnsureFileError) -> None:
        self.platform = platform
        self.error = error
        super().__init__(f"when resolving {platform[0]}-{platform[1]}: {error}")


class MultiError(EnsureFileError):
    """Several errors at once, shown as ``err[0]: …`` lines like the client does."""

    def __init__(self, errors: Sequence[EnsureFileError]) -> None:
        self.errors = list(errors)
        lines = [f"err[{i}]: {err}" for i, err in enumerate(self.errors[:MAX_LISTED_ERRORS])]
        if len(self.errors) > MAX_LISTED_ERRORS:
            lines.append(f"err[{MAX_LISTED_ERRORS}:{len(self.errors)}] <omitted>")
        super().__init__("\n".join(lines))


def combine_errors(errors: Sequence[EnsureFileError]) -> EnsureFileError | None:
    """None for no errors, the error itself for one, else a `MultiError`."""
    if not errors:
        return None
    if len(errors) == 1:
        return errors[0]
    return MultiError(errors)
