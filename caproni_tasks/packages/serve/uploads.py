"""Upload operations: bytes arrive at a secret URL, are verified, then wait to be registered.

``RegisterInstance`` of an instance the repository lacks starts an operation; its bytes
land in ``<repository>/@uploads/<operation>.part`` (inside the repository directory, so
the final rename stays on one file system; ``@`` keeps the name apart from packages).
``FinishUpload`` verifies them in a background thread — they must hash to the instance
ID and be a valid package of the announced name — and on success moves the file to
``@uploads/verified/<instance id>`` (the content-addressed store). The next
``RegisterInstance`` moves it into the package through the directory repository,
under its lock. Nothing reaches ``@instances/`` or ``@index.json`` unverified.

Operations live in memory: a restarted server forgets unfinished uploads (the client
starts again) and removes their leftover files after `STALE_AFTER`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from caproni_tasks.packages.cipd_protocol import GrpcCode, PrpcError
from caproni_tasks.packages.format import (
    PackageFormatError,
    PackageReader,
    hasher_for,
    instance_id_of_digest,
)
from caproni_tasks.packages.serve.resumable import (
    Chunk,
    ContentRangeError,
    StatusQuery,
    parse_content_range,
    range_header,
)

__all__ = [
    "DEFAULT_MAX_UPLOAD",
    "STALE_AFTER",
    "UPLOADS_DIR",
    "ChunkWriter",
    "Reply",
    "UploadArea",
    "UploadOperation",
    "UploadStatus",
]

log = logging.getLogger(__name__)

UPLOADS_DIR = "@uploads"
VERIFIED_DIR = "verified"
#: Largest package an upload may carry (bytes).
DEFAULT_MAX_UPLOAD = 8 << 30
#: Seconds after which an untouched operation and its files are dropped.
STALE_AFTER = 24 * 3600.0
_READ_CHUNK = 1 << 20


class UploadStatus(Enum):
    UPLOADING = "UPLOADING"
    VERIFYING = "VERIFYING"
    PUBLISHED = "PUBLISHED"
    ERRORED = "ERRORED"
    CANCELED = "CANCELED"


@dataclass(frozen=True)
class Reply:
    """An answer to an upload-URL request."""

    status: int
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class UploadOperation:
    operation_id: str
    package: str
    instance_id: str
    path: Path
    status: UploadStatus = UploadStatus.UPLOADING
    received: int = 0
    total: int | None = None
    error: str = ""
    writing: bool = False
    touched: float = field(default_factory=time.monotonic)
    settled: threading.Event = field(default_factory=threading.Event)

    @property
    def complete(self) -> bool:
        return self.total is not None and self.received == self.total


class ChunkWriter:
    """Appends one PUT's body to its operation; `close` says what to answer."""

    def __init__(self, area: UploadArea, operation: UploadOperation, chunk: Chunk) -> None:
        self._area = area
        self._op = operation
        self._chunk = chunk
        self._start = operation.received
        self._skip = operation.received - chunk.first  # bytes of this body already kept
        self._seen = 0
        self._file: BinaryIO = open(operation.path, "r+b")  # noqa: SIM115 - closed in close()
        self._file.seek(operation.received)
        self._file.truncate()

    def write(self, data: bytes) -> None:
        start = self._seen
        self._seen += len(data)
        low = max(self._skip - start, 0)
        high = min(len(data), self._chunk.length - start)
        if high > low:
            self._file.write(data[low:high])
            self._op.received += high - low

    def close(self, *, disconnected: bool = False) -> Reply:
        """Finish the PUT. A client that went away keeps what arrived (it resumes with a
        status query); a body of the wrong length is refused and forgotten."""
        op = self._op
        try:
            self._file.close()
            if not disconnected and self._seen != self._chunk.length:
                op.received = self._start
                with open(op.path, "r+b") as out:
                    out.truncate(self._start)
                return Reply(
                    400,
                    f"Content-Range announces {self._chunk.length} bytes, "
                    f"the body had {self._seen}",
                )
            if self._chunk.total is not None:
                op.total = self._chunk.total
            return self._area.progress_reply(op)
        except OSError as error:
            log.error("upload %s: cannot write %s: %s", op.operation_id, op.path, error)
            return Reply(503, "the server could not store this chunk; retry")
        finally:
            op.writing = False
            op.touched = time.monotonic()


class UploadArea:
    """The upload operations of one repository directory."""

    def __init__(
        self,
        repository_root: Path,
        *,
        max_size: int = DEFAULT_MAX_UPLOAD,
        stale_after: float = STALE_AFTER,
    ) -> None:
        self.directory = repository_root / UPLOADS_DIR
        self.verified = self.directory / VERIFIED_DIR
        self.max_size = max_size
        self.stale_after = stale_after
        self._ops: dict[str, UploadOperation] = {}
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Create the area; remove files that earlier servers left for too long."""
        self.verified.mkdir(parents=True, exist_ok=True)
        horizon = time.time() - self.stale_after
        for directory in (self.directory, self.verified):
            for path in directory.iterdir():
                with contextlib.suppress(OSError):
                    if path.is_file() and path.stat().st_mtime < horizon:
                        path.unlink()

    # --- operations --------------------------------------------------------------------

    def begin(self, package: str, instance_id: str) -> UploadOperation:
        self._prune()
        self.verified.mkdir(parents=True, exist_ok=True)
        operation_id = secrets.token_urlsafe(24)
        path = self.directory / f"{operation_id}.part"
        path.touch(mode=0o600, exist_ok=False)
        op = UploadOperation(operation_id, package, instance_id, path)
        with self._lock:
            self._ops[operation_id] = op
        return op

    def _prune(self) -> None:
        horizon = time.monotonic() - self.stale_after
        with self._lock:
            stale = [
                op
                for op in self._ops.values()
                if op.touched < horizon and not op.writing
                and op.status is not UploadStatus.VERIFYING
            ]  # fmt: skip
            for op in stale:
                del self._ops[op.operation_id]
        for op in stale:
            op.path.unlink(missing_ok=True)

    def _get(self, operation_id: str) -> UploadOperation:
        with self._lock:
            op = self._ops.get(operation_id)
        if op is None:
            raise PrpcError(GrpcCode.NOT_FOUND, "no such upload operation")
        return op

    # --- the upload URL ------------------------------------------------------------------

    def start_chunk(
        self, operation_id: str, content_range: str | None, content_length: int | None
    ) -> Reply | ChunkWriter:
        """Decide about one PUT before its body is read: an answer, or a writer for it."""
        with self._lock:
            op = self._ops.get(operation_id)
            if op is None:
                return Reply(404, "no such upload (unknown, expired or cancelled)")
            if op.status in (UploadStatus.VERIFYING, UploadStatus.PUBLISHED):
                return Reply(200, "upload complete")
            if op.status is not UploadStatus.UPLOADING:
                return Reply(410, f"this upload is {op.status.value.lower()}: {op.error}")
            if op.writing:
                return Reply(503, "another request is writing to this upload; retry")
            try:
                asked = parse_content_range(content_range, content_length)
            except ContentRangeError as error:
                return Reply(400, str(error))
            if asked.total is not None:
                if op.total is not None and asked.total != op.total:
                    return Reply(400, f"the total size changed from {op.total} to {asked.total}")
                if asked.total > self.max_size:
                    return Reply(413, f"too large: this server takes at most {self.max_size} bytes")
            op.touched = time.monotonic()
            if isinstance(asked, StatusQuery):
                if asked.total is not None:
                    op.total = asked.total
                return self.progress_reply(op)
            if asked.first > op.received:  # a gap: tell the client where to resume
                return Reply(308, "", range_header(op.received))
            if asked.last >= self.max_size:
                return Reply(413, f"too large: this server takes at most {self.max_size} bytes")
            op.writing = True
        try:
            return ChunkWriter(self, op, asked)
        except OSError as error:
            op.writing = False
            log.error("upload %s: cannot open %s: %s", operation_id, op.path, error)
            return Reply(503, "the server could not store this chunk; retry")

    def progress_reply(self, op: UploadOperation) -> Reply:
        if op.complete:
            return Reply(200, "upload complete")
        return Reply(308, "", range_header(op.received))

    # --- FinishUpload / CancelUpload -----------------------------------------------------

    def finish(self, operation_id: str, *, wait: float) -> UploadOperation:
        """Start verifying a complete upload (once); wait up to ``wait`` s for the verdict."""
        op = self._get(operation_id)
        with self._lock:
            if op.status is UploadStatus.UPLOADING:
                if op.writing or not op.complete:
                    total = "?" if op.total is None else str(op.total)
                    raise PrpcError(
                        GrpcCode.FAILED_PRECONDITION,
                        f"the upload is not complete: {op.received} of {total} bytes received",
                    )
                op.status = UploadStatus.VERIFYING
                op.touched = time.monotonic()
                threading.Thread(
                    target=self._verify, args=(op,), name=f"verify-{op.instance_id}", daemon=True
                ).start()
        op.settled.wait(wait)
        return op

    def cancel(self, operation_id: str) -> UploadOperation:
        op = self._get(operation_id)
        with self._lock:
            if op.status in (UploadStatus.VERIFYING, UploadStatus.PUBLISHED):
                raise PrpcError(
                    GrpcCode.FAILED_PRECONDITION,
                    f"the upload is already {op.status.value}, it cannot be cancelled",
                )
            if op.status is UploadStatus.UPLOADING:
                if op.writing:
                    raise PrpcError(GrpcCode.FAILED_PRECONDITION, "a chunk is being written; retry")
                op.status = UploadStatus.CANCELED
                op.settled.set()
        op.path.unlink(missing_ok=True)
        return op

    def _verify(self, op: UploadOperation) -> None:
        try:
            problem = self._problem(op)
        except Exception:  # a bug must not leave the operation VERIFYING for ever
            log.exception("verifying upload %s failed", op.operation_id)
            problem = "internal error while verifying the upload"
        if problem is None:
            try:
                os.chmod(op.path, 0o444)
                os.replace(op.path, self.verified / op.instance_id)
            except OSError as error:
                log.error("upload %s: cannot store %s: %s", op.operation_id, op.path, error)
                problem = "the server could not store the verified upload"
        if problem is not None:
            op.error = problem
            op.path.unlink(missing_ok=True)
            op.status = UploadStatus.ERRORED
        else:
            op.status = UploadStatus.PUBLISHED
        op.touched = time.monotonic()
        op.settled.set()

    def _problem(self, op: UploadOperation) -> str | None:
        hasher = hasher_for(op.instance_id)
        with open(op.path, "rb") as data:
            while block := data.read(_READ_CHUNK):
                hasher.update(block)
        actual = instance_id_of_digest(hasher)
        if actual != op.instance_id:
            return (
                f"hash mismatch: the uploaded data hashes to {actual}, "
                f"not to the instance ID {op.instance_id}"
            )
        try:
            with PackageReader(op.path, expected_package=op.package):
                pass
        except PackageFormatError as error:
            return "not a valid package: " + str(error).replace(f"package file {op.path}: ", "")
        return None

    # --- the verified store -------------------------------------------------------------

    def verified_file(self, instance_id: str) -> Path | None:
        path = self.verified / instance_id
        return path if path.is_file() else None

    def discard_verified(self, instance_id: str) -> None:
        (self.verified / instance_id).unlink(missing_ok=True)
