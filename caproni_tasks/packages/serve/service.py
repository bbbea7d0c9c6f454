"""The CIPD methods (cipd.Repository and cipd.Storage) over a directory repository.

Each method takes a decoded request `Message` and returns the response message (a
dict in protojson shape) or raises `PrpcError` with the code and wording of the CIPD
backend: "no such package: X", "no such ref", "no such tag", "no such instance", and
FAILED_PRECONDITION for a tag that names several instances. Everything here is
synchronous: the endpoint runs it in a worker thread.

Differences from the CIPD backend, by nature of the directory repository: there are no
ACLs (reads are anonymous, writes need the one write token), no hidden packages, no
processors or metadata, and no record of who registered, tagged or moved a ref, or
when a ref moved or a tag was attached, so ``ListRefs`` is sorted by name and tags by
key. New instances are SHA-256 (the directory names instances by SHA-256 ID).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from caproni_tasks.ensure import ValidationError, version_kind
from caproni_tasks.packages.backends.directory import LocalRepository
from caproni_tasks.packages.cipd_protocol import (
    REPOSITORY_SERVICE,
    STORAGE_SERVICE,
    GrpcCode,
    PrpcError,
    object_ref,
)
from caproni_tasks.packages.format import PackageReader
from caproni_tasks.packages.index import AMBIGUOUS_TAG, InstanceRecord, PackageIndex
from caproni_tasks.packages.repository import (
    InstanceNotFoundError,
    PackageNotFoundError,
    RepositoryError,
)
from caproni_tasks.packages.serve.messages import (
    Message,
    instance_message,
    invalid,
    ref_message,
    tag_message,
)
from caproni_tasks.packages.serve.signing import UrlSigner
from caproni_tasks.packages.serve.uploads import UploadArea, UploadOperation, UploadStatus

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "Call",
    "CipdService",
    "Method",
    "signed_instance_path",
    "upload_path",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Call:
    """What a method needs to know about the HTTP request: the URL clients reach us by."""

    base_url: str  # scheme://host[:port], no trailing slash


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    handler: Callable[[Message, Call], dict[str, Any]]
    writes: bool


def signed_instance_path(package: str, instance_id: str) -> str:
    """The path a signed download URL names (``@`` keeps it apart from packages)."""
    return f"/@signed/{package}/+/{instance_id}"


def upload_path(operation_id: str) -> str:
    return f"/@upload/{operation_id}"


def not_found(what: str) -> PrpcError:
    return PrpcError(GrpcCode.NOT_FOUND, what)


class CipdService:
    def __init__(
        self,
        repository: LocalRepository,
        signer: UrlSigner,
        uploads: UploadArea,
        *,
        finish_wait: float = 10.0,
    ) -> None:
        self.repository = repository
        self.signer = signer
        self.uploads = uploads
        self.finish_wait = finish_wait
        self._register_lock = threading.Lock()
        self.methods: dict[tuple[str, str], Method] = {}
        for service, name, handler, writes in (
            (REPOSITORY_SERVICE, "ResolveVersion", self.resolve_version, False),
            (REPOSITORY_SERVICE, "GetInstanceURL", self.get_instance_url, False),
            (REPOSITORY_SERVICE, "DescribeInstance", self.describe_instance, False),
            (REPOSITORY_SERVICE, "ListPrefix", self.list_prefix, False),
            (REPOSITORY_SERVICE, "ListInstances", self.list_instances, False),
            (REPOSITORY_SERVICE, "SearchInstances", self.search_instances, False),
            (REPOSITORY_SERVICE, "ListRefs", self.list_refs, False),
            (REPOSITORY_SERVICE, "RegisterInstance", self.register_instance, True),
            (REPOSITORY_SERVICE, "CreateRef", self.create_ref, True),
            (REPOSITORY_SERVICE, "AttachTags", self.attach_tags, True),
            (STORAGE_SERVICE, "FinishUpload", self.finish_upload, True),
            (STORAGE_SERVICE, "CancelUpload", self.cancel_upload, True),
        ):
            self.methods[(service, name)] = Method(service, name, handler, writes)

    def lookup(self, service: str, name: str) -> Method:
        method = self.methods.get((service, name))
        if method is not None:
            return method
        if service not in (REPOSITORY_SERVICE, STORAGE_SERVICE):
            raise PrpcError(GrpcCode.UNIMPLEMENTED, f'unknown service "{service}"')
        raise PrpcError(
            GrpcCode.UNIMPLEMENTED, f'method "{name}" of service "{service}" is not implemented'
        )

    # --- shared pieces -----------------------------------------------------------------

    def _index(self, package: str) -> PackageIndex:
        try:
            return self.repository.read_index(package)
        except PackageNotFoundError:
            raise not_found(f"no such package: {package}") from None

    @staticmethod
    def _record(index: PackageIndex, instance_id: str) -> InstanceRecord:
        for record in index.instances:
            if record.instance_id == instance_id:
                return record
        raise not_found("no such instance")

    def _instance(self, index: PackageIndex, instance_id: str) -> dict[str, Any]:
        record = self._record(index, instance_id)
        return instance_message(index.package, record.instance_id, record.registered_at)

    @staticmethod
    def _resolve(index: PackageIndex, version: str) -> str:
        kind = version_kind(version)
        if kind == "instance_id":
            if not index.has_instance(version):
                raise not_found("no such instance")
            return version
        if kind == "ref":
            target = index.refs.get(version)
            if target is None:
                raise not_found("no such ref")
            return target
        if kind == "tag":
            owners = index.tags.get(version, [])
            if len(owners) > 1:
                raise PrpcError(GrpcCode.FAILED_PRECONDITION, AMBIGUOUS_TAG)
            if not owners:
                raise not_found("no such tag")
            return owners[0]
        raise invalid(f'bad version "{version}": not a valid version identifier')

    def resolve(self, package: str, version: str) -> tuple[PackageIndex, str]:
        """The package's index and the instance ID ``version`` names."""
        if version_kind(version) is None:  # a bad version is refused before any read
            raise invalid(f'bad version "{version}": not a valid version identifier')
        index = self._index(package)
        return index, self._resolve(index, version)

    @staticmethod
    def _page(records: list[InstanceRecord], request: Message, package: str) -> dict[str, Any]:
        """``{instances, nextPageToken}`` for one page (the token: the last ID shown)."""
        size = request.integer("pageSize")
        if size < 0:
            raise invalid("pageSize: must not be negative")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        token = request.string("pageToken")
        start = 0
        if token:
            positions = [i for i, r in enumerate(records) if r.instance_id == token]
            if not positions:
                raise invalid("pageToken: not a page token this server gave")
            start = positions[0] + 1
        page = records[start : start + size]
        response: dict[str, Any] = {}
        if page:
            response["instances"] = [
                instance_message(package, r.instance_id, r.registered_at) for r in page
            ]
        if start + size < len(records):
            response["nextPageToken"] = page[-1].instance_id
        return response

    def signed_url(self, call: Call, package: str, instance_id: str) -> str:
        return call.base_url + self.signer.sign(signed_instance_path(package, instance_id))

    def _upload_op(self, call: Call, op: UploadOperation) -> dict[str, Any]:
        status = op.status  # read once: a verifier thread may move it on
        message: dict[str, Any] = {
            "operationId": op.operation_id,
            "uploadUrl": call.base_url + upload_path(op.operation_id),
            "status": status.value,
        }
        if status is UploadStatus.PUBLISHED:
            message["object"] = object_ref(op.instance_id)
        if status is UploadStatus.ERRORED and op.error:
            message["errorMessage"] = op.error
        return message

    @contextmanager
    def _writing(self, package: str) -> Iterator[None]:
        """The directory repository's refusals as the CIPD backend words them."""
        try:
            yield
        except PackageNotFoundError:
            raise not_found(f"no such package: {package}") from None
        except InstanceNotFoundError:
            raise not_found("no such instance") from None
        except ValidationError as error:
            raise invalid(str(error)) from None

    # --- cipd.Repository -----------------------------------------------------------------

    def resolve_version(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        version = request.string("version")
        if not version:
            raise invalid("version: required")
        index, instance_id = self.resolve(package, version)
        return self._instance(index, instance_id)

    def get_instance_url(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        instance_id = request.instance_id()
        self._record(self._index(package), instance_id)
        return {"signedUrl": self.signed_url(call, package, instance_id)}

    def describe_instance(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        instance_id = request.instance_id()
        index = self._index(package)
        response: dict[str, Any] = {"instance": self._instance(index, instance_id)}
        if request.boolean("describeRefs"):
            refs = [
                ref_message(package, name, target)
                for name, target in sorted(index.refs.items())
                if target == instance_id
            ]
            if refs:
                response["refs"] = refs
        if request.boolean("describeTags"):
            tags = [
                tag_message(tag)
                for tag, owners in sorted(index.tags.items())
                if instance_id in owners
            ]
            if tags:
                response["tags"] = tags
        return response

    def list_prefix(self, request: Message, call: Call) -> dict[str, Any]:
        prefix = request.prefix()
        recursive = request.boolean("recursive")
        try:
            names = self.repository.packages()
        except RepositoryError:
            if self.repository.root.exists():
                raise
            names = []  # nothing published yet
        base = f"{prefix}/" if prefix else ""
        under = [name for name in names if name.startswith(base)]
        packages = [n for n in under if recursive or "/" not in n[len(base) :]]
        prefixes: set[str] = set()
        for name in under:
            parents = name[len(base) :].split("/")[:-1]
            depths = len(parents) if recursive else min(len(parents), 1)
            for depth in range(1, depths + 1):
                prefixes.add(base + "/".join(parents[:depth]))
        response: dict[str, Any] = {}
        if packages:
            response["packages"] = packages
        if prefixes:
            response["prefixes"] = sorted(prefixes)
        return response

    def list_instances(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        index = self._index(package)
        return self._page(list(reversed(index.instances)), request, package)

    def search_instances(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        tags = request.tags()
        if not tags:
            raise invalid("tags: at least one tag is required")
        index = self._index(package)
        matching = [
            record
            for record in reversed(index.instances)
            if all(record.instance_id in index.tags.get(tag, ()) for tag in tags)
        ]
        return self._page(matching, request, package)

    def list_refs(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        index = self._index(package)
        refs = [ref_message(package, name, target) for name, target in sorted(index.refs.items())]
        return {"refs": refs} if refs else {}

    def register_instance(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        instance_id = request.instance_id()
        if len(instance_id) == 40:
            raise invalid("this server registers SHA256 instances only (hashAlgo SHA256)")
        with self._register_lock:
            try:
                index: PackageIndex | None = self.repository.read_index(package)
            except PackageNotFoundError:
                index = None
            if index is not None and index.has_instance(instance_id):
                self.uploads.discard_verified(instance_id)  # a second upload's leftover
                return {
                    "status": "ALREADY_REGISTERED",
                    "instance": self._instance(index, instance_id),
                }
            verified = self.uploads.verified_file(instance_id)
            if verified is None:
                op = self.uploads.begin(package, instance_id)
                return {"status": "NOT_UPLOADED", "uploadOp": self._upload_op(call, op)}
            with PackageReader(verified) as reader:
                uploaded_as = reader.manifest.package_name
            if uploaded_as != package:
                raise invalid(
                    f"instance {instance_id} is a package named {uploaded_as!r}, not {package!r}"
                )
            self.repository.register_instance(verified)
            self.uploads.discard_verified(instance_id)
            return {
                "status": "REGISTERED",
                "instance": self._instance(self._index(package), instance_id),
            }

    def create_ref(self, request: Message, call: Call) -> dict[str, Any]:
        name = request.ref_name("name")
        package = request.package()
        instance_id = request.instance_id()
        with self._writing(package):
            self._index(package)
            self.repository.set_ref(package, name, instance_id)
        return {}

    def attach_tags(self, request: Message, call: Call) -> dict[str, Any]:
        package = request.package()
        instance_id = request.instance_id()
        tags = request.tags()
        if not tags:
            raise invalid("tags: cannot be empty")
        with self._writing(package):
            self._index(package)
            self.repository.attach_tags(package, instance_id, tags)
        return {}

    # --- cipd.Storage ----------------------------------------------------------------------

    def _operation_id(self, request: Message) -> str:
        operation_id = request.string("uploadOperationId")
        if not operation_id:
            raise invalid("uploadOperationId: required")
        return operation_id

    def finish_upload(self, request: Message, call: Call) -> dict[str, Any]:
        operation_id = self._operation_id(request)
        if request.message("forceHash") is not None:
            raise PrpcError(GrpcCode.PERMISSION_DENIED, "forceHash is not allowed")
        return self._upload_op(call, self.uploads.finish(operation_id, wait=self.finish_wait))

    def cancel_upload(self, request: Message, call: Call) -> dict[str, Any]:
        return self._upload_op(call, self.uploads.cancel(self._operation_id(request)))
