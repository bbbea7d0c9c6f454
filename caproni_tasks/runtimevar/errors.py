"""Error codes and the one exception type of runtime variables.

The numbering is Go Cloud's ``gcerrors`` so codes mean the same thing in logs and
tools on both sides. A driver's own exception (an ``OSError``, a JSON error) travels as
``__cause__`` of a `VariableError`; a `VariableError` is never wrapped in another.
"""

from __future__ import annotations

import asyncio
import enum
from typing import NoReturn


class ErrorCode(enum.IntEnum):
    """What went wrong, independent of the driver (gcerrors numbering)."""

    OK = 0
    UNKNOWN = 1
    NOT_FOUND = 2
    ALREADY_EXISTS = 3
    INVALID_ARGUMENT = 4
    INTERNAL = 5
    UNIMPLEMENTED = 6
    FAILED_PRECONDITION = 7
    PERMISSION_DENIED = 8
    RESOURCE_EXHAUSTED = 9
    CANCELED = 10
    DEADLINE_EXCEEDED = 11


class VariableError(Exception):
    """A runtime-variable failure with a portable `code`; the driver's error is ``__cause__``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"VariableError({self.code.name}, {self.message!r})"

    def __str__(self) -> str:
        return self.message

    def same_as(self, other: VariableError) -> bool:
        """True when *other* reports the same problem (used to suppress repeated errors)."""
        return self.code == other.code and self.message == other.message

    def fresh(self) -> VariableError:
        """A copy to raise: stored states are raised many times, so each raise gets its own
        traceback while the driver's original error stays the cause."""
        if self is ERR_CLOSED:
            return self
        copy = VariableError(self.code, self.message)
        copy.__cause__ = self.__cause__
        copy.__suppress_context__ = True
        return copy


def make_error(code: ErrorCode, message: str, cause: BaseException | None = None) -> VariableError:
    """A `VariableError` with *cause* attached; a cause that already is one is returned as is."""
    if isinstance(cause, VariableError):
        return cause
    err = VariableError(code, message)
    if cause is not None:
        err.__cause__ = cause
        err.__suppress_context__ = True
    return err


#: The one closed error: every operation on a closed `Variable` raises this very instance.
ERR_CLOSED = VariableError(ErrorCode.FAILED_PRECONDITION, "Variable has been Closed")


def raise_closed() -> NoReturn:
    """Raise `ERR_CLOSED` without letting its traceback grow across raises."""
    ERR_CLOSED.__traceback__ = None
    raise ERR_CLOSED from None


def error_code(exc: BaseException | None) -> ErrorCode:
    """The code of any exception seen around a variable, like Go's ``gcerrors.Code``.

    Cancellation of an awaiting task stays an ``asyncio.CancelledError`` (asyncio needs it
    to propagate untouched); this maps it, and bare timeouts, to CANCELED and
    DEADLINE_EXCEEDED for callers that report codes.
    """
    if exc is None:
        return ErrorCode.OK
    if isinstance(exc, VariableError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return ErrorCode.CANCELED
    if isinstance(exc, TimeoutError):
        return ErrorCode.DEADLINE_EXCEEDED
    return ErrorCode.UNKNOWN
