"""The Starlette application that serves one directory repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.serve.auth import WriteAuth
from caproni_tasks.packages.serve.prpc import prpc_endpoint
from caproni_tasks.packages.serve.routes import (
    dl_endpoint,
    index_endpoint,
    instance_endpoint,
    signed_endpoint,
    upload_endpoint,
)
from caproni_tasks.packages.serve.service import CipdService
from caproni_tasks.packages.serve.signing import DEFAULT_LIFETIME, UrlSigner
from caproni_tasks.packages.serve.uploads import DEFAULT_MAX_UPLOAD, UploadArea

__all__ = ["ServeConfig", "create_app"]


@dataclass(frozen=True)
class ServeConfig:
    """What to serve and how.

    ``write_token``: the bearer token writes need (None: read-only). ``secret``: the
    key of signed URLs (random per server when None). ``url_lifetime``: seconds a
    signed download URL stays valid. ``finish_wait``: seconds ``FinishUpload`` waits
    for a verification before answering ``VERIFYING``.
    """

    repository: Path
    write_token: str | None = None
    secret: bytes | None = None
    url_lifetime: float = DEFAULT_LIFETIME
    max_upload_size: int = DEFAULT_MAX_UPLOAD
    finish_wait: float = 10.0


_BANNER = """\
caproni-tasks package repository ({access}).

Point an ensure file at it with:  $ServiceURL {base}
Static layout:  GET /<package>/@index.json, /<package>/@instances/<instance id>
CIPD protocol:  POST /prpc/cipd.Repository/<Method>, /prpc/cipd.Storage/<Method>
Downloads:      GET /dl/<package>/+/<version>
"""


def create_app(config: ServeConfig) -> Starlette:
    repository = LocalRepository(config.repository)
    root = repository.root
    auth = WriteAuth(config.write_token)
    signer = UrlSigner(config.secret, lifetime=config.url_lifetime)
    uploads = UploadArea(root, max_size=config.max_upload_size)
    if auth.writable:
        uploads.prepare()
    service = CipdService(repository, signer, uploads, finish_wait=config.finish_wait)
    access = "read and write with the write token" if auth.writable else "read-only"

    async def banner(request: Request) -> Response:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return PlainTextResponse(_BANNER.format(access=access, base=base))

    routes = [
        # The static layout first: its paths end in "@index.json" or "@instances/<id>",
        # which no other route produces, while package names may start like them.
        Route("/{package:path}/@index.json", index_endpoint(root), methods=["GET", "HEAD"]),
        Route("/{package:path}/@instances/{iid}", instance_endpoint(root), methods=["GET", "HEAD"]),
        Route(
            "/prpc/{service}/{method}",
            prpc_endpoint(service, auth),
            methods=["POST", "OPTIONS", "GET", "HEAD", "PUT", "DELETE", "PATCH"],
        ),
        Route(
            "/@signed/{package:path}/+/{iid}",
            signed_endpoint(root, signer),
            methods=["GET", "HEAD"],
        ),
        Route("/@upload/{operation}", upload_endpoint(uploads), methods=["PUT"]),
        Route("/dl/{rest:path}", dl_endpoint(service), methods=["GET", "HEAD"]),
        Route("/", banner, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes)
