"""Signed, expiring URLs: an HMAC-SHA256 over a path and its expiry time.

A download URL handed out by ``GetInstanceURL`` is ``<path>?expires=<unix>&sig=<hex>``;
anyone holding it may fetch that one path until it expires, without credentials, like
a signed Cloud Storage URL. The secret is per server (random unless given), so URLs
die with the server that made them unless it is restarted with the same secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlencode

__all__ = ["DEFAULT_LIFETIME", "UrlSigner"]

#: As the CIPD backend: a signed URL is good for two hours.
DEFAULT_LIFETIME = 2 * 3600.0


class UrlSigner:
    def __init__(
        self,
        secret: bytes | None = None,
        *,
        lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.lifetime = lifetime
        self._clock = clock

    def signature(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, path: str, *, expires: int | None = None) -> str:
        """``path`` with the query that makes it a signed URL."""
        if expires is None:
            expires = int(self._clock() + self.lifetime)
        query = urlencode({"expires": expires, "sig": self.signature(path, expires)})
        return f"{path}?{query}"

    def problem(self, path: str, expires: str | None, signature: str | None) -> str | None:
        """Why a request for ``path`` with these query values is refused, or None."""
        if not expires or not signature:
            return "this URL is not signed (ask GetInstanceURL for a signed one)"
        try:
            when = int(expires)
        except ValueError:
            return "malformed signed URL"
        if not hmac.compare_digest(self.signature(path, when), signature):
            return "bad signature for this URL"
        if when < self._clock():
            return "this signed URL has expired (ask GetInstanceURL for a fresh one)"
        return None
