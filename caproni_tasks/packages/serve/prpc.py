"""The pRPC endpoint: ``POST /prpc/<service>/<method>`` with JSON in and out.

Exactly the transport rules of the reference: POST only (OPTIONS answers CORS);
``Content-Type: application/json`` (or the legacy ``application/prpc; encoding=json``;
absent means JSON here, since binary protobuf is not spoken); a response in JSON unless
``Accept`` excludes it (406); gzip request bodies; ``X-Prpc-Grpc-Code`` on every
answer with the HTTP status of its code; success as ``)]}'`` + JSON, failure as plain
text. Unexpected failures are logged and answered with a generic message, never a
traceback.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from caproni_tasks.packages.cipd_protocol import (
    CODE_HEADER,
    GrpcCode,
    PrpcError,
    encode_response,
    http_status_for,
)
from caproni_tasks.packages.locking import LockTimeoutError
from caproni_tasks.packages.repository import BackendUnavailableError
from caproni_tasks.packages.serve.auth import WriteAuth
from caproni_tasks.packages.serve.messages import Message, invalid
from caproni_tasks.packages.serve.service import Call, CipdService

__all__ = ["MAX_REQUEST_BYTES", "error_response", "prpc_endpoint"]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 << 20
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS, POST",
    "Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, X-Prpc-Grpc-Timeout",
    "Access-Control-Max-Age": "600",
}


def error_response(
    code: GrpcCode, message: str, *, status: int | None = None, headers: Mapping[str, str] = {}
) -> Response:
    return Response(
        (message.rstrip("\n") + "\n").encode("utf-8", "replace"),
        status_code=status or http_status_for(code),
        media_type="text/plain; charset=utf-8",
        headers={CODE_HEADER: str(int(code)), "X-Content-Type-Options": "nosniff", **headers},
    )


def _ok(payload: Mapping[str, Any]) -> Response:
    return Response(
        encode_response(payload),
        status_code=200,
        media_type="application/json",
        headers={CODE_HEADER: "0", "X-Content-Type-Options": "nosniff"},
    )


def _media(header: str) -> tuple[str, dict[str, str]]:
    kind, *params = header.split(";")
    values = {}
    for param in params:
        key, _, value = param.partition("=")
        values[key.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), values


def _is_json(header: str) -> bool:
    kind, params = _media(header)
    return kind == "application/json" or (
        kind == "application/prpc" and params.get("encoding") == "json"
    )


def _check_content_type(header: str | None) -> None:
    if header is None or not header.strip() or _is_json(header):
        return
    raise invalid(
        f"unsupported Content-Type {header!r}: this server speaks the pRPC JSON encoding "
        "only (send Content-Type: application/json)"
    )


def _accepts_json(header: str | None) -> bool:
    if header is None or not header.strip():
        return True
    for item in header.split(","):
        kind, _ = _media(item)
        if kind in ("*/*", "application/*") or _is_json(item):
            return True
    return False


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise invalid(f"request body larger than {MAX_REQUEST_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise invalid(f"request body larger than {MAX_REQUEST_BYTES} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(bytes(body), MAX_REQUEST_BYTES + 1)
        except zlib.error as error:
            raise invalid(f"malformed gzip request body: {error}") from None
        if len(plain) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
            raise invalid(f"request body larger than {MAX_REQUEST_BYTES} bytes")
        return plain
    if encoding not in ("identity", ""):
        raise invalid(f"unsupported Content-Encoding {encoding!r} (gzip or identity)")
    return bytes(body)


def _decode(body: bytes) -> Message:
    if not body.strip():
        return Message({})
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise invalid(f"malformed request body: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise invalid("malformed request body: expected a JSON object")
    return Message(data)


def prpc_endpoint(
    service: CipdService, auth: WriteAuth
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=200, headers=_CORS)
        if request.method != "POST":
            return error_response(
                GrpcCode.UNIMPLEMENTED,
                f"pRPC calls are POST requests, not {request.method}",
                headers={"Allow": "OPTIONS, POST"},
            )
        try:
            method = service.lookup(request.path_params["service"], request.path_params["method"])
            if method.writes:
                auth.check(request.headers.get("authorization"))
            if not _accepts_json(request.headers.get("accept")):
                return error_response(
                    GrpcCode.INVALID_ARGUMENT,
                    "this server answers in JSON only (Accept: application/json)",
                    status=406,
                )
            _check_content_type(request.headers.get("content-type"))
            message = _decode(await _read_body(request))
            call = Call(base_url=f"{request.url.scheme}://{request.url.netloc}")
            payload = await run_in_threadpool(method.handler, message, call)
        except PrpcError as error:
            return error_response(error.code, error.message)
        except ClientDisconnect:
            return error_response(GrpcCode.CANCELLED, "the client went away")
        except (BackendUnavailableError, LockTimeoutError) as error:
            log.warning("%s: %s", request.url.path, error)
            return error_response(GrpcCode.UNAVAILABLE, "Service unavailable")
        except Exception:
            log.exception("%s failed", request.url.path)
            return error_response(GrpcCode.INTERNAL, "Internal server error")
        return _ok(payload)

    return endpoint
