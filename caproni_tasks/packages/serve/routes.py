"""The plain HTTP endpoints beside pRPC.

- ``GET /<package>/@index.json`` and ``GET /<package>/@instances/<iid>``: the static
  layout, so ``http://`` (static) clients read the same server;
- ``GET /@signed/<package>/+/<iid>?expires=…&sig=…``: the signed download URLs that
  ``GetInstanceURL`` hands out (403 once expired or when tampered with);
- ``GET /dl/<package>/+/<version>``: 302 to a signed URL, ``X-Cipd-Instance`` set;
- ``PUT /@upload/<operation>``: the resumable upload URL of ``RegisterInstance``
  (the unguessable operation ID is the credential).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from caproni_tasks.ensure.validation import is_instance_id, is_valid_package_name
from caproni_tasks.packages.cipd_protocol import PrpcError, http_status_for
from caproni_tasks.packages.index import INDEX_FILE, INSTANCES_DIR
from caproni_tasks.packages.serve.service import Call, CipdService
from caproni_tasks.packages.serve.signing import UrlSigner
from caproni_tasks.packages.serve.uploads import ChunkWriter, Reply, UploadArea

__all__ = [
    "dl_endpoint",
    "index_endpoint",
    "instance_endpoint",
    "signed_endpoint",
    "upload_endpoint",
]

Endpoint = Callable[[Request], Awaitable[Response]]
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status, headers=headers)


def _instance_file(root: Path, package: str, instance_id: str) -> Response:
    if not is_valid_package_name(package) or not is_instance_id(instance_id, any_hash=False):
        return _text(404, "no such instance")
    path = root.joinpath(*package.split("/"), INSTANCES_DIR, instance_id)
    if not path.is_file():
        return _text(404, "no such instance")
    return FileResponse(path, media_type="application/octet-stream", headers=_IMMUTABLE)


def index_endpoint(root: Path) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        package = request.path_params["package"]
        if not is_valid_package_name(package):
            return _text(404, "no such package")
        path = root.joinpath(*package.split("/"), INDEX_FILE)
        if not path.is_file():
            return _text(404, "no such package")
        return FileResponse(
            path, media_type="application/json", headers={"Cache-Control": "no-cache"}
        )

    return endpoint


def instance_endpoint(root: Path) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return _instance_file(root, request.path_params["package"], request.path_params["iid"])

    return endpoint


def signed_endpoint(root: Path, signer: UrlSigner) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        problem = signer.problem(
            request.url.path, request.query_params.get("expires"), request.query_params.get("sig")
        )
        if problem is not None:
            return _text(403, problem)
        return _instance_file(root, request.path_params["package"], request.path_params["iid"])

    return endpoint


def dl_endpoint(service: CipdService) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        package, separator, version = request.path_params["rest"].partition("/+/")
        if not separator or not package or not version:
            return _text(400, "expected /dl/<package>/+/<version>")
        if not is_valid_package_name(package):
            return _text(400, f"bad package name {package!r}")
        try:
            _, instance_id = await run_in_threadpool(service.resolve, package, version)
        except PrpcError as error:
            return _text(http_status_for(error.code), error.message)
        base = f"{request.url.scheme}://{request.url.netloc}"
        return RedirectResponse(
            service.signed_url(Call(base), package, instance_id),
            status_code=302,
            headers={"X-Cipd-Instance": instance_id},
        )

    return endpoint


def _reply(reply: Reply) -> Response:
    return (
        _text(reply.status, reply.text, reply.headers)
        if reply.text
        else Response(status_code=reply.status, headers=reply.headers)
    )


def upload_endpoint(uploads: UploadArea) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        length = request.headers.get("content-length")
        outcome = await run_in_threadpool(
            uploads.start_chunk,
            request.path_params["operation"],
            request.headers.get("content-range"),
            int(length) if length is not None and length.isdigit() else None,
        )
        if not isinstance(outcome, ChunkWriter):
            return _reply(outcome)
        disconnected = False
        try:
            async for data in request.stream():
                if data:
                    await run_in_threadpool(outcome.write, data)
        except ClientDisconnect:
            disconnected = True
        except OSError:
            disconnected = True  # the disk refused: keep what was written, let the client resume
        finally:
            reply = await run_in_threadpool(lambda: outcome.close(disconnected=disconnected))
        return _reply(reply)

    return endpoint
