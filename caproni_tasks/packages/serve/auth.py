"""Who may write: the holder of the server's write token, sent as a bearer token.

Reads are anonymous. A server started without a write token is read-only: writes get
PERMISSION_DENIED. Without an ``Authorization`` header a write is UNAUTHENTICATED; with
a wrong token, PERMISSION_DENIED. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac

from caproni_tasks.packages.cipd_protocol import GrpcCode, PrpcError

__all__ = ["WriteAuth"]


class WriteAuth:
    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def writable(self) -> bool:
        return self._token is not None

    def check(self, authorization: str | None) -> None:
        """Return if ``authorization`` (the header's value) grants writes, else raise."""
        if self._token is None:
            raise PrpcError(
                GrpcCode.PERMISSION_DENIED,
                "this server is read-only: start pkg.serve with a write token to publish",
            )
        if not authorization:
            raise PrpcError(
                GrpcCode.UNAUTHENTICATED,
                "writes need credentials: send 'Authorization: Bearer <write token>'",
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PrpcError(
                GrpcCode.UNAUTHENTICATED,
                "malformed Authorization header: expected 'Bearer <write token>'",
            )
        if not hmac.compare_digest(token.strip().encode(), self._token):
            raise PrpcError(
                GrpcCode.PERMISSION_DENIED, "this token does not grant writes on this server"
            )
