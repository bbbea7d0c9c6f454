"""kubectl for the ``mirror`` kind: the deployment copy, its record, and status queries.

Only these command lines are ever run (users' RBAC and the test stand-in rely on
it), each with ``--context C`` appended when a kube context is configured::

    kubectl get deployment NAME -n NS -o json
    kubectl get deployments -n NS -o json
    kubectl apply -f -
    kubectl scale deployment/NAME --replicas=N -n NS
    kubectl rollout status deployment/NAME -n NS --timeout=Ns
    kubectl delete deployment NAME -n NS --ignore-not-found

The copy of ``NAME`` is ``NAME-caproni`` (shortened to a DNS-1123 label when needed):
one replica, server-owned fields stripped, labelled as ours, with an extra label in its
selector and pod template so that it and the original never select each other's pods.
Before the original is scaled to 0 its replica count is written to the session's copy
record (``<state>/caproni-tasks/sessions/<key>.copies.json``), so whatever ends a
session — a stop, an error, or a crash followed by ``invoke run`` / ``invoke clean``
— puts the original back and deletes the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy as copylib
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from caproni_tasks.reloader.tools import find_tool

__all__ = [
    "COPY_LABEL",
    "COPY_SUFFIX",
    "MANAGED_BY",
    "CopyRecord",
    "CopyRecords",
    "Kubectl",
    "KubectlError",
    "KubectlResult",
    "copy_manifest",
    "copy_name",
    "is_not_found",
    "restore_leftover_copies",
]

COPY_SUFFIX = "-caproni"
#: Label of every object we create (standard Kubernetes recommended label).
MANAGED_BY = ("app.kubernetes.io/managed-by", "caproni-tasks")
#: The extra label in the copy's selector and pod template: its value is the original.
COPY_LABEL = "caproni-tasks/copy-of"
#: Annotations on the copy: where it came from, for status and repairs.
ORIGINAL_REPLICAS_ANNOTATION = "caproni-tasks/original-replicas"
SESSION_ANNOTATION = "caproni-tasks/session"

#: Seconds any single kubectl command may take (rollout status has its own timeout).
COMMAND_TIMEOUT = 60.0

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

#: Metadata the API server owns: never part of a manifest we apply.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "ownerReferences",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
)
_SERVER_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",
)


class KubectlError(Exception):
    """A kubectl command failed; the message is its first error line."""

    def __init__(self, message: str, result: KubectlResult | None = None) -> None:
        super().__init__(message)
        self.result = result


# -- names and manifests ---------------------------------------------------------------


def copy_name(original: str) -> str:
    """``<original>-caproni`` when that is a valid DNS-1123 label (63 characters at
    most); else a shortened, sanitised name that keeps a hash of the original."""
    wanted = f"{original}{COPY_SUFFIX}"
    if len(wanted) <= 63 and _DNS_LABEL.fullmatch(wanted):
        return wanted
    digest = hashlib.sha256(original.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", original.lower()).strip("-")
    room = 63 - len(COPY_SUFFIX) - len(digest) - 1
    stem = stem[:room].strip("-")
    return f"{stem}-{digest}{COPY_SUFFIX}" if stem else f"{digest}{COPY_SUFFIX}"


def label_value(text: str) -> str:
    """``text`` as a valid label value (63 characters at most)."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[: 63 - 9].strip("-_.")
    return f"{stem}-{digest}" if stem else digest


def original_replicas(deployment: Mapping[str, Any]) -> int:
    """``spec.replicas`` of a deployment (Kubernetes defaults a missing one to 1)."""
    spec = deployment.get("spec")
    value = spec.get("replicas", 1) if isinstance(spec, dict) else 1
    return value if isinstance(value, int) and value >= 0 else 1


def copy_manifest(
    original: Mapping[str, Any], *, name: str, session: str, replicas: int
) -> dict[str, Any]:
    """The copy of a deployment (``kubectl get -o json`` output) as a manifest to apply."""
    manifest = copylib.deepcopy(dict(original))
    manifest.pop("status", None)
    metadata = dict(manifest.get("metadata") or {})
    source = str(metadata.get("name", ""))
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    metadata["name"] = name
    mark = label_value(source)
    labels = dict(metadata.get("labels") or {})
    labels[MANAGED_BY[0]] = MANAGED_BY[1]
    labels[COPY_LABEL] = mark
    metadata["labels"] = labels
    annotations = {
        k: v
        for k, v in dict(metadata.get("annotations") or {}).items()
        if k not in _SERVER_ANNOTATIONS
    }
    annotations[ORIGINAL_REPLICAS_ANNOTATION] = str(replicas)
    annotations[SESSION_ANNOTATION] = session
    metadata["annotations"] = annotations
    manifest["metadata"] = metadata

    spec = dict(manifest.get("spec") or {})
    spec["replicas"] = 1
    spec.pop("paused", None)  # a paused original must not leave the copy unrolled
    selector = dict(spec.get("selector") or {})
    match_labels = dict(selector.get("matchLabels") or {})
    match_labels[COPY_LABEL] = mark
    selector["matchLabels"] = match_labels
    spec["selector"] = selector
    template = dict(spec.get("template") or {})
    template_metadata = dict(template.get("metadata") or {})
    template_labels = dict(template_metadata.get("labels") or {})
    template_labels[COPY_LABEL] = mark
    template_labels[MANAGED_BY[0]] = MANAGED_BY[1]
    template_metadata["labels"] = template_labels
    template_metadata.pop("creationTimestamp", None)
    template["metadata"] = template_metadata
    spec["template"] = template
    manifest["spec"] = spec
    return manifest


def is_ours(deployment: Mapping[str, Any]) -> bool:
    metadata = deployment.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return isinstance(labels, dict) and labels.get(MANAGED_BY[0]) == MANAGED_BY[1]


# -- running kubectl -------------------------------------------------------------------


@dataclass(frozen=True)
class KubectlResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The first non-empty line of stderr (kubectl's error), or the exit status."""
        for line in self.stderr.splitlines():
            if line.strip():
                return line.strip()
        return f"kubectl exited with status {self.returncode}"


def is_not_found(result: KubectlResult) -> bool:
    return result.returncode != 0 and "(NotFound)" in result.stderr


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to an executable and an optional kube context."""

    program: str
    context: str | None = None

    def argv(self, *args: str) -> list[str]:
        extra = ["--context", self.context] if self.context else []
        return [self.program, *args, *extra]

    # The command lines, and nothing else.
    @staticmethod
    def get_args(name: str, namespace: str) -> list[str]:
        return ["get", "deployment", name, "-n", namespace, "-o", "json"]

    @staticmethod
    def list_args(namespace: str) -> list[str]:
        return ["get", "deployments", "-n", namespace, "-o", "json"]

    @staticmethod
    def apply_args() -> list[str]:
        return ["apply", "-f", "-"]

    @staticmethod
    def scale_args(name: str, namespace: str, replicas: int) -> list[str]:
        return ["scale", f"deployment/{name}", f"--replicas={replicas}", "-n", namespace]

    @staticmethod
    def rollout_args(name: str, namespace: str, timeout: int) -> list[str]:
        return ["rollout", "status", f"deployment/{name}", "-n", namespace, f"--timeout={timeout}s"]

    @staticmethod
    def delete_args(name: str, namespace: str) -> list[str]:
        return ["delete", "deployment", name, "-n", namespace, "--ignore-not-found"]

    # -- synchronous (status, clean) -------------------------------------------------

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> KubectlResult:
        argv = self.argv(*args)
        try:
            done = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return KubectlResult(tuple(argv), 124, "", f"timed out after {timeout:g}s")
        except OSError as exc:
            return KubectlResult(tuple(argv), 127, "", f"cannot run {self.program}: {exc}")
        return KubectlResult(tuple(argv), done.returncode, done.stdout, done.stderr)

    def get(self, name: str, namespace: str) -> dict[str, Any] | None:
        """The deployment, or None when it does not exist; `KubectlError` otherwise."""
        return _parse_get(self.run(self.get_args(name, namespace)))

    def list(self, namespace: str) -> list[dict[str, Any]]:
        result = self.run(self.list_args(namespace))
        if result.returncode != 0:
            raise KubectlError(result.error_line, result)
        return _parse_items(result)

    def scale(self, name: str, namespace: str, replicas: int) -> None:
        result = self.run(self.scale_args(name, namespace, replicas))
        if result.returncode != 0:
            raise KubectlError(result.error_line, result)

    def delete(self, name: str, namespace: str) -> None:
        result = self.run(self.delete_args(name, namespace))
        if result.returncode != 0:
            raise KubectlError(result.error_line, result)

    # -- asynchronous (run) ----------------------------------------------------------

    async def arun(
        self, args: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> KubectlResult:
        """Run kubectl; a cancellation kills it and waits for it, so nothing it was
        doing can land after the caller's cleanup."""
        argv = self.argv(*args)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return KubectlResult(tuple(argv), 127, "", f"cannot run {self.program}: {exc}")
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), timeout
            )
        except TimeoutError:
            await _kill(proc)
            return KubectlResult(tuple(argv), 124, "", f"timed out after {timeout:g}s")
        except asyncio.CancelledError:
            await asyncio.shield(_kill(proc))
            raise
        assert proc.returncode is not None
        return KubectlResult(
            tuple(argv),
            proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )

    async def aget(self, name: str, namespace: str) -> dict[str, Any] | None:
        return _parse_get(await self.arun(self.get_args(name, namespace)))

    async def acheck(
        self, args: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> KubectlResult:
        result = await self.arun(args, stdin=stdin, timeout=timeout)
        if result.returncode != 0:
            raise KubectlError(result.error_line, result)
        return result


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


def _parse_get(result: KubectlResult) -> dict[str, Any] | None:
    if is_not_found(result):
        return None
    if result.returncode != 0:
        raise KubectlError(result.error_line, result)
    try:
        data = json.loads(result.stdout)
    except ValueError as exc:
        raise KubectlError(f"kubectl printed no JSON object: {exc}", result) from exc
    if not isinstance(data, dict):
        raise KubectlError("kubectl printed no JSON object", result)
    return data


def _parse_items(result: KubectlResult) -> list[dict[str, Any]]:
    try:
        data = json.loads(result.stdout)
    except ValueError as exc:
        raise KubectlError(f"kubectl printed no JSON list: {exc}", result) from exc
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise KubectlError("kubectl printed no list of items", result)
    return [item for item in items if isinstance(item, dict)]


# -- the copy record -------------------------------------------------------------------


@dataclass
class CopyRecord:
    """One deployment copy a session made: enough to undo it without the config."""

    reloader: str
    namespace: str
    original: str
    copy: str
    replicas: int  # the original's replica count before we scaled it to 0
    context: str | None = None
    kubectl: str = "kubectl"  # the executable used (a fallback when PATH lacks one)

    def kubectl_for_repair(self) -> Kubectl:
        program = find_tool("kubectl") or self.kubectl
        return Kubectl(program, self.context)

    def describe(self) -> str:
        where = f"namespace {self.namespace}" + (
            f", context {self.context}" if self.context else ""
        )
        return f"deployment/{self.copy} (copy of {self.original}, {where})"


@dataclass
class CopyRecords:
    """The copies of one session of one config, in a file of their own beside the
    session's state file (written durably: it is what a crash leaves to repair)."""

    config: str
    supervisor_pid: int
    supervisor_start: float | None
    copies: list[CopyRecord] = field(default_factory=list)

    @staticmethod
    def path_for(config_path: Path | str) -> Path:
        from caproni_tasks.reloader.session import session_file

        state = session_file(Path(config_path))
        return state.with_name(state.stem + ".copies.json")

    @classmethod
    def load(cls, config_path: Path | str) -> CopyRecords | None:
        """The record of ``config_path``; None when there is none or it is unusable
        (an unusable one names nothing we could repair)."""
        try:
            data = json.loads(cls.path_for(config_path).read_text(encoding="utf-8"))
            copies = [CopyRecord(**entry) for entry in data["copies"]]
            return cls(
                config=str(data["config"]),
                supervisor_pid=int(data["supervisor_pid"]),
                supervisor_start=data.get("supervisor_start"),
                copies=copies,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        from caproni_tasks.reloader import proctree

        return proctree.is_alive(self.supervisor_pid, self.supervisor_start)

    def save(self) -> None:
        from caproni_tasks.atomicfile import write_atomic

        path = self.path_for(self.config)
        if not self.copies:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": self.config,
            "supervisor_pid": self.supervisor_pid,
            "supervisor_start": self.supervisor_start,
            "written_at": time.time(),
            "copies": [asdict(c) for c in self.copies],
        }
        write_atomic(path, json.dumps(payload, indent=1), mode=0o600, durable=True)

    def add(self, record: CopyRecord) -> None:
        self.copies = [
            c
            for c in self.copies
            if (c.context, c.namespace, c.original)
            != (record.context, record.namespace, record.original)
        ]
        self.copies.append(record)
        self.save()

    def discard(self, record: CopyRecord) -> None:
        self.copies = [c for c in self.copies if c is not record and c != record]
        self.save()


_session_records: dict[str, CopyRecords] = {}


def session_records(config_path: Path) -> CopyRecords:
    """The copy record of this process's session of ``config_path`` (one per process:
    every mirror reloader of the session adds to it)."""
    from caproni_tasks.reloader.session import current_process_start

    key = str(config_path)
    records = _session_records.get(key)
    if records is None or records.supervisor_pid != os.getpid():
        records = CopyRecords(key, os.getpid(), current_process_start())
        _session_records[key] = records
    return records


def restore_copy_sync(record: CopyRecord) -> None:
    """Scale the original back and delete the copy; idempotent. `KubectlError` when
    the cluster refuses."""
    kubectl = record.kubectl_for_repair()
    try:
        kubectl.scale(record.original, record.namespace, record.replicas)
    except KubectlError as exc:
        if exc.result is None or not is_not_found(exc.result):
            raise
    kubectl.delete(record.copy, record.namespace)


def restore_leftover_copies(
    config_path: Path, restore: Callable[[CopyRecord], None] = restore_copy_sync
) -> tuple[list[str], list[str]]:
    """Undo the copies of a session of ``config_path`` whose supervisor is gone.
    Returns (lines on what was repaired, lines on what could not be)."""
    records = CopyRecords.load(config_path)
    if records is None:
        path = CopyRecords.path_for(config_path)
        if path.exists():
            with contextlib.suppress(OSError):
                path.unlink()
            return [f"removed an unusable copy record {path}"], []
        return [], []
    if records.alive:
        return [], []
    done: list[str] = []
    failed: list[str] = []
    for record in list(records.copies):
        try:
            restore(record)
        except (KubectlError, OSError) as exc:
            failed.append(f"could not undo {record.describe()}: {exc}")
            continue
        records.discard(record)
        done.append(
            f"restored deployment/{record.original} to {record.replicas} replicas and "
            f"deleted its copy {record.copy} (namespace {record.namespace})"
        )
    return done, failed


def pending_copies(config_path: Path) -> bool:
    return CopyRecords.path_for(config_path).exists()


def iter_records(config_path: Path) -> Iterator[CopyRecord]:
    records = CopyRecords.load(config_path)
    if records is not None and not records.alive:
        yield from records.copies
