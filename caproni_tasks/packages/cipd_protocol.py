"""The CIPD backend protocol as both our client and our server speak it (pRPC JSON).

Facts from ../shared/reference/cipd-service.md: every call is a POST to
``/prpc/<service>/<Method>`` with JSON bodies (camelCase keys; snake_case also accepted
on input), the ``X-Prpc-Grpc-Code`` header decides success whatever the HTTP status, a
successful JSON body starts with the XSSI guard ``)]}'`` and a newline, errors are plain
text, int64 values travel as strings, enums as their names, and fields holding a default
value are left out. One module so the two ends cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

from caproni_tasks.jsonfile import JsonShapeError, load_object

__all__ = [
    "CODE_HEADER",
    "DEFAULT_SERVICE_URL",
    "REPOSITORY_SERVICE",
    "STORAGE_SERVICE",
    "TRANSIENT_CODES",
    "XSSI_PREFIX",
    "GrpcCode",
    "PrpcError",
    "code_for_http_status",
    "decode_response",
    "encode_response",
    "error_code_for",
    "field",
    "http_status_for",
    "instance_id_of_ref",
    "normalize_service_url",
    "object_ref",
    "rpc_path",
]

#: What the cipd client talks to when nothing names a service.
DEFAULT_SERVICE_URL = "https://chrome-infra-packages.appspot.com"
REPOSITORY_SERVICE = "cipd.Repository"
STORAGE_SERVICE = "cipd.Storage"
XSSI_PREFIX = b")]}'\n"
CODE_HEADER = "X-Prpc-Grpc-Code"
JSON_TYPE = "application/json"


class GrpcCode(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: Codes a client retries with backoff (a per-attempt deadline included).
TRANSIENT_CODES = frozenset(
    {GrpcCode.UNKNOWN, GrpcCode.INTERNAL, GrpcCode.UNAVAILABLE, GrpcCode.DEADLINE_EXCEEDED}
)

_HTTP_STATUS = {
    GrpcCode.OK: 200,
    GrpcCode.CANCELLED: 499,
    GrpcCode.UNKNOWN: 500,
    GrpcCode.INVALID_ARGUMENT: 400,
    GrpcCode.DEADLINE_EXCEEDED: 504,
    GrpcCode.NOT_FOUND: 404,
    GrpcCode.ALREADY_EXISTS: 409,
    GrpcCode.PERMISSION_DENIED: 403,
    GrpcCode.RESOURCE_EXHAUSTED: 429,
    GrpcCode.FAILED_PRECONDITION: 400,
    GrpcCode.ABORTED: 409,
    GrpcCode.OUT_OF_RANGE: 400,
    GrpcCode.UNIMPLEMENTED: 501,
    GrpcCode.INTERNAL: 500,
    GrpcCode.UNAVAILABLE: 503,
    GrpcCode.DATA_LOSS: 500,
    GrpcCode.UNAUTHENTICATED: 401,
}

#: The cipd client's ``error_code`` for a gRPC failure (its ``rpcErr``).
_ERROR_CODES = {
    GrpcCode.UNKNOWN: "backend_unavailable_error",
    GrpcCode.INTERNAL: "backend_unavailable_error",
    GrpcCode.UNAVAILABLE: "backend_unavailable_error",
    GrpcCode.DEADLINE_EXCEEDED: "timeout_error",
    GrpcCode.CANCELLED: "timeout_error",
    GrpcCode.INVALID_ARGUMENT: "bad_argument_error",
    GrpcCode.PERMISSION_DENIED: "auth_error",
    GrpcCode.UNAUTHENTICATED: "auth_error",
    GrpcCode.NOT_FOUND: "invalid_version_error",
}


def http_status_for(code: GrpcCode) -> int:
    """The HTTP status a pRPC server sets beside ``code`` (clients ignore it)."""
    return _HTTP_STATUS.get(code, 500)


def code_for_http_status(status: int) -> GrpcCode:
    """The code of a response that carries no ``X-Prpc-Grpc-Code`` header (it never
    reached a pRPC server: a proxy or front end answered), as the Go client reads it."""
    if status == 401:
        return GrpcCode.UNAUTHENTICATED
    if status == 403:
        return GrpcCode.PERMISSION_DENIED
    if status == 503:
        return GrpcCode.UNAVAILABLE
    return GrpcCode.INTERNAL


def normalize_service_url(url: str) -> str:
    """A CIPD service URL as ``scheme://host[:port]`` (default port dropped, host in
    lower case); `ValueError` for anything but a root http(s) URL, as the cipd client
    refuses a path ("expecting a root URL")."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise ValueError(f"bad service URL {url!r}: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"bad service URL {url!r}: expecting http(s)://host[:port]")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"bad service URL {url!r}: credentials in the URL are not accepted "
            "(use caproni.auth_token or caproni.auth_token_command)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"bad service URL {url!r}: expecting a root URL, not one with a path "
            f"(the service is {scheme}://{parts.netloc})"
        )
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def error_code_for(code: GrpcCode) -> str:
    """The cipd client's JSON-output ``error_code`` for a failed call."""
    return _ERROR_CODES.get(code, "rpc_error")


class PrpcError(Exception):
    """A call that ended with a non-OK code; ``message`` is the server's text."""

    def __init__(self, code: GrpcCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def rpc_path(service: str, method: str) -> str:
    return f"/prpc/{service}/{method}"


def encode_response(payload: Mapping[str, Any]) -> bytes:
    """A successful response body: the XSSI guard, compact JSON, a newline."""
    return XSSI_PREFIX + json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def decode_response(body: bytes, source: str) -> dict[str, Any]:
    """A successful response's object (the XSSI guard is optional on input)."""
    if body.startswith(XSSI_PREFIX[:4]):
        body = body[4:].lstrip(b"\r\n")
    try:
        return load_object(body, source)
    except JsonShapeError as error:
        raise PrpcError(GrpcCode.INTERNAL, f"malformed response: {error}") from None


def field(message: Mapping[str, Any], camel: str, default: Any = None) -> Any:
    """A field by its JSON (camelCase) name or its proto (snake_case) name."""
    if camel in message:
        return message[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return message.get(snake, default)


# --- instance IDs <-> ObjectRef ---------------------------------------------------------

_ALGO_NUMBERS = {"SHA1": 1, "SHA256": 2}
_ALGO_NAMES = {number: name for name, number in _ALGO_NUMBERS.items()}
_DIGEST_BYTES = {"SHA1": 20, "SHA256": 32}


def object_ref(instance_id: str) -> dict[str, str]:
    """``{"hashAlgo", "hexDigest"}`` of an instance ID (legacy 40-hex SHA-1 included)."""
    if len(instance_id) == 40:
        return {"hashAlgo": "SHA1", "hexDigest": instance_id.lower()}
    try:
        blob = base64.urlsafe_b64decode(instance_id + "=" * (-len(instance_id) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"not a valid instance ID: {instance_id!r}") from None
    algo = _ALGO_NAMES.get(blob[-1]) if blob else None
    if algo is None or len(blob) - 1 != _DIGEST_BYTES[algo]:
        raise ValueError(f"not a valid instance ID: {instance_id!r}")
    return {"hashAlgo": algo, "hexDigest": blob[:-1].hex()}


def instance_id_of_ref(ref: Mapping[str, Any]) -> str:
    """The instance ID an ObjectRef names; `ValueError` for an ill-formed one."""
    algo = field(ref, "hashAlgo")
    digest = field(ref, "hexDigest")
    if algo not in _DIGEST_BYTES or not isinstance(digest, str):
        raise ValueError(f"not a valid object ref: {dict(ref)!r}")
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raise ValueError(f"not a valid object ref: {dict(ref)!r}") from None
    if len(raw) != _DIGEST_BYTES[algo] or digest != digest.lower():
        raise ValueError(f"not a valid object ref: {dict(ref)!r}")
    if algo == "SHA1":
        return digest
    encoded = base64.urlsafe_b64encode(raw + bytes([_ALGO_NUMBERS[algo]]))
    return encoded.rstrip(b"=").decode("ascii")
