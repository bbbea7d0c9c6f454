"""The ``mirror`` kind (Caproni's): local processes in a cluster workload's context,
through mirrord.

Setup, as Caproni does without mirrord's paid operator: the target deployment is
copied to ``<name>-caproni`` (one replica, our labels; see
`caproni_tasks.reloader.kubectl`), the copy is rolled out, and the original is scaled
to 0 once its replica count is on disk. Each process not marked ``context: local``
then runs as::

    mirrord exec --target deployment/<copy>[/container/<c>] --target-namespace <ns>
        [--context C] -f <generated json> -- /bin/sh -c '<command>'

with ``MIRRORD_PROGRESS_MODE=off``; the generated config carries ``filesystem``,
``network`` and ``env`` as ``feature.fs``/``feature.network``/``feature.env``.
Every process gets the supervisor's full care (restarts, watch, runtime variables,
``port: N`` as a tcp readiness check, ``depends_on``). However the session ends, the
original is scaled back and the copy deleted; after a crash the next ``invoke run``
or ``invoke clean`` does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caproni_tasks.config.kinds import Kind, register_kind
from caproni_tasks.config.model import LifecycleHook, Location, ProcessSpec, ReadyCheck
from caproni_tasks.config.schema import ENTRY_NAME, PROCESS
from caproni_tasks.config.spec import (
    Choice,
    Data,
    Duration,
    Field,
    Integer,
    ListOf,
    MapOf,
    Struct,
    Text,
)
from caproni_tasks.diagnostics import Diagnostic
from caproni_tasks.reloader import kubectl as kube
from caproni_tasks.reloader import mirrord_config
from caproni_tasks.reloader.contract import (
    RunFailedError,
    State,
    Status,
    TargetNotFoundError,
)
from caproni_tasks.reloader.description import ProcessDescription, describe_spec
from caproni_tasks.reloader.kinds.common import (
    failed_in_session,
    not_cloned,
    section_diagnostics,
    settings_for_run,
    settings_for_status,
    settings_of,
)
from caproni_tasks.reloader.tools import (
    ToolMissingError,
    find_tool,
    missing_tool_message,
    require_tool,
)

if TYPE_CHECKING:
    from caproni_tasks.config.build import SectionContext
    from caproni_tasks.config.model import CaproniConfig, ReloaderSpec
    from caproni_tasks.reloader.description import ProcessHost

__all__ = [
    "KIND",
    "SECTION",
    "MirrorManager",
    "MirrorSettings",
    "MirrorTarget",
    "build_settings",
    "mirrord_argv",
]

NAME = "mirror"
TARGET_TYPES = ("deployment", "deploy")
HOOK_TYPES = ("edit_mode_prepare", "edit_mode_start")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

MIRROR_PROCESS = Struct(
    {
        **PROCESS.fields,
        "port": Field(
            Integer(
                1,
                65535,
                description="Port the process listens on: ready once it accepts connections "
                "(a tcp readiness check, unless ready: says otherwise).",
            )
        ),
        "context": Field(
            Choice(
                ("mirror", "local"),
                description="mirror runs it through mirrord in the workload's context; "
                "local runs it as a plain local process.",
            ),
            default="mirror",
        ),
    },
    description="A process run through mirrord (or locally), supervised like any other.",
)

SECTION = Struct(
    {
        "target": Field(
            Struct(
                {
                    "namespace": Field(Text(nonempty=True), required=True),
                    "kubernetes_type": Field(
                        Text(nonempty=True, description="deployment (the only kind copied)"),
                        required=True,
                    ),
                    "name": Field(Text(nonempty=True), required=True),
                    "container": Field(Text(nonempty=True)),
                },
                description="The workload whose context the processes run in.",
            ),
            required=True,
        ),
        "kube_context": Field(
            Text(nonempty=True, description="kube context for kubectl and mirrord (--context).")
        ),
        "rollout_timeout": Field(
            Duration(description="How long the copy may take to roll out (default 300s)."),
            default=300,
        ),
        "filesystem": Field(
            Data(
                mapping=False,
                description="mirrord feature.fs: mode, read_only, read_write, "
                "local, not_found, mapping.",
            )
        ),
        "network": Field(
            Data(mapping=False, description="mirrord feature.network: incoming, outgoing, dns.")
        ),
        "env": Field(
            Data(
                mapping=False,
                description="mirrord feature.env: include, exclude, override, mapping, unset…",
            )
        ),
        "edit_mode_processes": Field(MapOf(key=ENTRY_NAME, value=MIRROR_PROCESS, isolate=True)),
        "lifecycle_hooks": Field(
            ListOf(
                Struct(
                    {
                        "type": Field(Choice(HOOK_TYPES), required=True),
                        "script": Field(Text(nonempty=True), required=True),
                    }
                )
            )
        ),
    },
    description="Settings of a reloader of type mirror (Caproni's shape).",
)


@dataclass(frozen=True)
class MirrorTarget:
    namespace: str
    kubernetes_type: str
    name: str
    container: str | None = None

    def path(self, deployment: str) -> str:
        """mirrord's ``--target`` for ``deployment`` (the copy)."""
        tail = f"/container/{self.container}" if self.container else ""
        return f"deployment/{deployment}{tail}"


@dataclass(frozen=True)
class MirrorSettings:
    """The ``mirror:`` section: the target, mirrord's feature sections, the processes
    (in the common process shape) and what is mirror-specific about each."""

    target: MirrorTarget
    #: ``edit_mode_processes`` in the common shape (``depends_on`` resolved by the loader).
    processes: tuple[ProcessSpec, ...] = ()
    #: Processes marked ``context: local``: they run without mirrord.
    local: frozenset[str] = frozenset()
    #: ``port: N`` per process.
    ports: Mapping[str, int] = field(default_factory=dict)
    filesystem: Any = None
    network: Any = None
    env: Any = None
    kube_context: str | None = None
    rollout_timeout: float = 300.0
    lifecycle_hooks: tuple[LifecycleHook, ...] = ()
    #: Warnings found while building (shown by validate): (where, code, message).
    notes: tuple[tuple[Location, str, str], ...] = ()

    @property
    def edit_mode_processes(self) -> tuple[ProcessSpec, ...]:
        return self.processes

    @property
    def mirrored(self) -> list[ProcessSpec]:
        return [p for p in self.processes if p.name not in self.local]

    def mirrord_config(self) -> dict[str, Any]:
        return mirrord_config.generate(
            filesystem=self.filesystem, network=self.network, env=self.env
        )


def build_settings(section: Mapping[str, Any], ctx: SectionContext) -> MirrorSettings:
    target = section["target"]
    _check_target(target, ctx)
    notes: list[tuple[Location, str, str]] = []
    checks = (
        ("filesystem", mirrord_config.check_filesystem),
        ("network", mirrord_config.check_network),
        ("env", mirrord_config.check_env),
    )
    for key, check in checks:
        for problem in check(section.get(key)):
            steps = (key, *problem.steps)
            if problem.severity == "error":
                ctx.error(steps, problem.code, problem.message)
            else:
                notes.append((ctx.at(steps, key=True), problem.code, problem.message))
    raw_processes = section.get("edit_mode_processes")
    processes = ctx.processes(raw_processes, ("edit_mode_processes",))
    local: set[str] = set()
    ports: dict[str, int] = {}
    for name, entry in (raw_processes or {}).items():
        if not isinstance(entry, Mapping):
            continue
        if entry.get("context") == "local":
            local.add(name)
        if isinstance(entry.get("port"), int):
            ports[name] = entry["port"]
    hooks = []
    for index, hook in enumerate(section.get("lifecycle_hooks") or ()):
        if not isinstance(hook, Mapping):
            continue
        script, _ = ctx.expand(str(hook["script"]), ("lifecycle_hooks", index, "script"))
        hooks.append(
            LifecycleHook(
                type=str(hook["type"]),
                script=script,
                directory=ctx.directory,
                location=ctx.at(("lifecycle_hooks", index), key=True),
            )
        )
    return MirrorSettings(
        target=MirrorTarget(
            namespace=target["namespace"],
            kubernetes_type=target["kubernetes_type"],
            name=target["name"],
            container=target.get("container"),
        ),
        processes=processes,
        local=frozenset(local),
        ports=ports,
        filesystem=section.get("filesystem"),
        network=section.get("network"),
        env=section.get("env"),
        kube_context=section.get("kube_context"),
        rollout_timeout=float(section.get("rollout_timeout", 300)),
        lifecycle_hooks=tuple(hooks),
        notes=tuple(notes),
    )


def _check_target(target: Mapping[str, Any], ctx: SectionContext) -> None:
    kind = target.get("kubernetes_type")
    if kind not in TARGET_TYPES:
        ctx.error(
            ("target", "kubernetes_type"),
            "mirror-target-type",
            f"kubernetes_type {kind!r} is not supported: only deployment targets can be "
            "copied (mirrord targets other kinds only with its operator)",
        )
    checks = (
        ("namespace", _DNS_LABEL, 63, "a namespace (DNS-1123 label: a-z, 0-9, '-')"),
        ("name", _DNS_SUBDOMAIN, 253, "a deployment name (DNS-1123: a-z, 0-9, '-', '.')"),
        ("container", _DNS_LABEL, 63, "a container name (DNS-1123 label: a-z, 0-9, '-')"),
    )
    for key, pattern, limit, what in checks:
        value = target.get(key)
        if value is None:
            continue
        if len(str(value)) > limit or not pattern.fullmatch(str(value)):
            ctx.error(
                ("target", key),
                "mirror-target",
                f"target.{key} {value!r} is not {what}, at most {limit} characters",
            )


# -- running ---------------------------------------------------------------------------


def mirrord_argv(
    mirrord: str, settings: MirrorSettings, copy: str, config_file: Path, command: str
) -> tuple[str, ...]:
    """The ``mirrord exec`` command line of one process (``command`` may hold
    ``${runtimevar:…}`` templates: the supervisor renders every word)."""
    argv = [
        mirrord,
        "exec",
        "--target",
        settings.target.path(copy),
        "--target-namespace",
        settings.target.namespace,
    ]
    if settings.kube_context:
        argv += ["--context", settings.kube_context]
    argv += ["-f", str(config_file), "--", "/bin/sh", "-c", command]
    return tuple(argv)


def describe(
    settings: MirrorSettings, mirrord: str | None, copy: str, config_file: Path
) -> list[ProcessDescription]:
    """The processes of a mirror reloader as the supervisor runs them."""
    described: list[ProcessDescription] = []
    for spec in settings.processes:
        port = settings.ports.get(spec.name)
        if spec.ready is None and port is not None:
            spec = replace(spec, ready=ReadyCheck(tcp=port))
        base = describe_spec(spec)
        if spec.name in settings.local:
            described.append(base)
            continue
        assert mirrord is not None
        described.append(
            replace(
                base,
                command="",
                argv=mirrord_argv(mirrord, settings, copy, config_file, spec.command),
                env={"MIRRORD_PROGRESS_MODE": "off", **spec.env},
            )
        )
    return described


def config_file_path(config: CaproniConfig, reloader: str) -> Path:
    """Where a reloader's generated mirrord config lives while its session runs."""
    from caproni_tasks.reloader.session import session_file

    state = session_file(config.path)
    return state.with_name(state.stem + ".mirrord") / f"{reloader}.json"


_repair_lock: asyncio.Lock | None = None


async def _repair_leftovers(config: CaproniConfig, host: ProcessHost, name: str) -> None:
    """Undo what a crashed session of this config left in the cluster, once per
    session, before this one records copies of its own."""
    global _repair_lock
    if _repair_lock is None:
        _repair_lock = asyncio.Lock()
    async with _repair_lock:
        if kube.pending_copies(config.path):
            done, failed = await asyncio.to_thread(kube.restore_leftover_copies, config.path)
            for line in done:
                host.event(name, line)
            if failed:
                raise RunFailedError(
                    "; ".join(failed) + " — fix the cluster access and run `invoke clean`"
                )


class MirrorManager:
    """The `Manager` of kind ``mirror``."""

    @property
    def type(self) -> str:
        return NAME

    async def run(self, reloader: ReloaderSpec, config: CaproniConfig, host: ProcessHost) -> None:
        settings = settings_for_run(reloader, MirrorSettings, NAME)
        try:
            kubectl = kube.Kubectl(require_tool("kubectl"), settings.kube_context)
            mirrord = require_tool("mirrord") if settings.mirrored else None
        except ToolMissingError as exc:
            raise RunFailedError(f"reloader {reloader.name}: {exc}") from exc
        await _repair_leftovers(config, host, reloader.name)

        target = settings.target
        copy = kube.copy_name(target.name)
        try:
            original = await kubectl.aget(target.name, target.namespace)
        except kube.KubectlError as exc:
            raise RunFailedError(f"reloader {reloader.name}: kubectl: {exc}") from exc
        if original is None:
            raise TargetNotFoundError(
                f"deployment {target.name} in namespace {target.namespace}"
                + (f" (context {settings.kube_context})" if settings.kube_context else "")
            )
        replicas = kube.original_replicas(original)
        if replicas == 0:
            replicas = await self._replicas_from_copy(kubectl, copy, target.namespace)
        record = kube.CopyRecord(
            reloader=reloader.name,
            namespace=target.namespace,
            original=target.name,
            copy=copy,
            replicas=replicas,
            context=settings.kube_context,
            kubectl=kubectl.program,
        )
        records = kube.session_records(config.path)
        config_file = config_file_path(config, reloader.name)
        records.add(record)  # on disk before the cluster changes
        try:
            await self._set_up(kubectl, settings, original, record, config, host, reloader.name)
            mirrord_config.write_config(config_file, settings.mirrord_config())
            from caproni_tasks.reloader.hooks import run_lifecycle_hooks

            if settings.lifecycle_hooks:
                await run_lifecycle_hooks(
                    settings.lifecycle_hooks,
                    scope=f"reloader {reloader.name}",
                    directory=reloader.directory,
                )
            await host.supervise(reloader.name, describe(settings, mirrord, copy, config_file))
        finally:
            with contextlib.suppress(FileNotFoundError):
                config_file.unlink()
            await asyncio.shield(self._tear_down(kubectl, record, records, host, reloader.name))

    @staticmethod
    async def _replicas_from_copy(kubectl: kube.Kubectl, copy: str, namespace: str) -> int:
        """An original at 0 replicas with a copy of ours beside it was scaled down by a
        session whose record is gone: the copy remembers the count."""
        try:
            existing = await kubectl.aget(copy, namespace)
        except kube.KubectlError:
            return 0
        if existing is None or not kube.is_ours(existing):
            return 0
        annotations = existing.get("metadata", {}).get("annotations") or {}
        value = str(annotations.get(kube.ORIGINAL_REPLICAS_ANNOTATION, "0"))
        return int(value) if value.isdigit() else 0

    async def _set_up(
        self,
        kubectl: kube.Kubectl,
        settings: MirrorSettings,
        original: dict[str, Any],
        record: kube.CopyRecord,
        config: CaproniConfig,
        host: ProcessHost,
        name: str,
    ) -> None:
        manifest = kube.copy_manifest(
            original, name=record.copy, session=str(config.path), replicas=record.replicas
        )

        try:
            await kubectl.acheck(kubectl.apply_args(), stdin=json.dumps(manifest))
            host.event(name, f"created deployment/{record.copy} in {record.namespace}; rolling out")
            timeout = max(1, int(settings.rollout_timeout))
            await kubectl.acheck(
                kubectl.rollout_args(record.copy, record.namespace, timeout), timeout=timeout + 30
            )
            await kubectl.acheck(kubectl.scale_args(record.original, record.namespace, 0))
        except kube.KubectlError as exc:
            raise RunFailedError(f"reloader {name}: kubectl: {exc}") from exc
        host.event(
            name,
            f"deployment/{record.copy} is rolled out; {record.original} scaled to 0 "
            f"(was {record.replicas})",
        )

    @staticmethod
    async def _tear_down(
        kubectl: kube.Kubectl,
        record: kube.CopyRecord,
        records: kube.CopyRecords,
        host: ProcessHost,
        name: str,
    ) -> None:
        try:
            result = await kubectl.arun(
                kubectl.scale_args(record.original, record.namespace, record.replicas)
            )
            if result.returncode != 0 and not kube.is_not_found(result):
                raise kube.KubectlError(result.error_line, result)
            await kubectl.acheck(kubectl.delete_args(record.copy, record.namespace))
        except kube.KubectlError as exc:
            host.event(
                name,
                f"could not undo {record.describe()}: {exc}; `invoke clean` retries",
                error=True,
            )
            return
        records.discard(record)
        host.event(
            name,
            f"restored {record.original} to {record.replicas} replicas; deleted {record.copy}",
        )

    # -- status ----------------------------------------------------------------------

    def status(self, reloader: ReloaderSpec, config: CaproniConfig) -> Status:
        settings = settings_for_status(reloader, MirrorSettings, NAME)
        blocking: list[str] = []  # what makes it not-ready
        reasons: list[str] = []  # worth knowing either way
        program = find_tool("kubectl")
        if settings.mirrored and find_tool("mirrord") is None:
            blocking.append(missing_tool_message("mirrord"))
        if not reloader.directory.is_dir():
            blocking.append(not_cloned(reloader))
        if program is None:
            return Status(State.NOT_READY, (missing_tool_message("kubectl"), *blocking))
        target = settings.target
        try:
            deployments = _cluster_view(config, program, settings.kube_context, target.namespace)
        except kube.KubectlError as exc:
            return Status(State.NOT_READY, (f"cluster unreachable: {exc}", *blocking))
        by_name = {str((d.get("metadata") or {}).get("name")): d for d in deployments}
        copy = kube.copy_name(target.name)
        leftover = by_name.get(copy)
        if leftover is not None and kube.is_ours(leftover) and not _session_alive(config):
            reasons.append(
                f"deployment/{copy} in namespace {target.namespace} was left by a session "
                f"that crashed; `invoke clean` deletes it and restores {target.name}"
            )
        if target.name not in by_name:
            where = f"namespace {target.namespace}" + (
                f" (context {settings.kube_context})" if settings.kube_context else ""
            )
            return Status(
                State.NOT_DEPLOYED,
                (f"deployment {target.name} not found in {where}", *blocking, *reasons),
            )
        if blocking:
            return Status(State.NOT_READY, (*blocking, *reasons))
        failed = [f"{p.name} exhausted its restarts" for p in failed_in_session(reloader, config)]
        if failed:
            return Status(State.FAILED, (*failed, *reasons))
        return Status(State.READY, tuple(reasons))

    # -- validate --------------------------------------------------------------------

    def validate(self, reloader: ReloaderSpec, config: CaproniConfig) -> list[Diagnostic]:
        settings = settings_of(reloader, MirrorSettings)
        section = section_diagnostics(
            reloader,
            config,
            settings.processes if settings else None,
            kind=NAME,
            needs="a target",
            none="edit_mode_processes",
        )
        if settings is None:
            return section
        notes = [
            Diagnostic.warning(where.file, where.line, where.column, code, message)
            for where, code, message in settings.notes
        ]
        return notes + section


def _session_alive(config: CaproniConfig) -> bool:
    from caproni_tasks.reloader.session import read_session

    session = read_session(config.path)
    return session is not None and session.alive


#: One ``kubectl get deployments`` per (kubectl, context, namespace) per loaded config:
#: `invoke status` asks every reloader, and reloaders share namespaces.
_views: dict[int, dict[tuple[str, str | None, str], list[dict[str, Any]] | kube.KubectlError]] = {}


def _cluster_view(
    config: CaproniConfig, program: str, context: str | None, namespace: str
) -> list[dict[str, Any]]:
    key = id(config)
    if key not in _views:
        _views[key] = {}
        weakref.finalize(config, _views.pop, key, None)
    cache = _views[key]
    slot = (program, context, namespace)
    if slot not in cache:
        try:
            cache[slot] = kube.Kubectl(program, context).list(namespace)
        except kube.KubectlError as exc:
            cache[slot] = exc
    found = cache[slot]
    if isinstance(found, kube.KubectlError):
        raise found
    return found


KIND = register_kind(
    Kind(
        NAME,
        manager=MirrorManager,
        section=SECTION,
        build=build_settings,
        process_names=lambda settings: [p.name for p in settings.processes],
        needs_edit_mode=True,
        description="processes in a cluster workload's context, through mirrord",
        builtin=True,
    )
)
