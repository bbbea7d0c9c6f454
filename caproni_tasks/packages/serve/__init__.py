"""``invoke pkg.serve``: a directory repository served over HTTP, statically and as CIPD.

One server answers both kinds of client:

- the static layout (``GET /<package>/@index.json``, ``/<package>/@instances/<iid>``),
  so ``http://`` repositories keep working;
- the CIPD backend protocol (pRPC JSON, ``/prpc/cipd.Repository/*`` and
  ``/prpc/cipd.Storage/*``) as described in ``shared/reference/cipd-service.md``, with
  signed expiring download URLs, resumable uploads and ``/dl/<package>/+/<version>``.

Modules, one job each: `signing` (signed URLs), `messages` (request fields in, response
messages out), `resumable` (the Cloud Storage resumable-upload headers), `uploads`
(upload operations and their verification), `service` (the CIPD methods over the
directory repository), `prpc` (the pRPC endpoint), `routes` (static files, signed
downloads, ``/dl``, upload PUTs), `app` (the Starlette application) and `runner`
(uvicorn, the printed URL, signals).

The server libraries (starlette, uvicorn) are the optional extra
``caproni-tasks[serve]``; nothing here imports them until a server is built.
"""

from __future__ import annotations

__all__ = ["EXTRA_HINT", "ServeExtraMissingError", "require_serve_extra"]

EXTRA_HINT = "pip install 'caproni-tasks[serve]'"


class ServeExtraMissingError(ImportError):
    """The ``serve`` extra (starlette, uvicorn) is not installed."""


def require_serve_extra() -> None:
    """Raise `ServeExtraMissingError` (one line naming the fix) without the extra."""
    missing = []
    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ServeExtraMissingError(f"pkg.serve needs {' and '.join(missing)}: {EXTRA_HINT}")
