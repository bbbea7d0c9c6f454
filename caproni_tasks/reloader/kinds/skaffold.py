"""The ``skaffold`` kind: ``skaffold dev`` in a repository, supervised.

The worked example of docs/reloaders.md, "Writing a kind": the section's schema, the
typed settings and their builder, and the manager, registered together as one `Kind`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from caproni_tasks.config.kinds import Kind, register_kind
from caproni_tasks.config.schema import ENV
from caproni_tasks.config.spec import Boolean, Choice, Duration, Field, ListOf, Struct, Text

if TYPE_CHECKING:
    from caproni_tasks.config.build import SectionContext

__all__ = ["KIND", "PORT_FORWARD_MODES", "SECTION", "SkaffoldSettings", "build_settings"]

NAME = "skaffold"

#: ``--port-forward`` modes; several may be combined with commas, except ``off``.
PORT_FORWARD_MODES = ("user", "services", "debug", "pods", "off")
_COMBINABLE = "(user|services|debug|pods)"

SECTION = Struct(
    {
        "file": Field(
            Text(nonempty=True, description="The skaffold config, relative to the repository."),
            default="skaffold.yaml",
        ),
        "profiles": Field(
            ListOf(Text(nonempty=True), description="Profiles to activate (-p), in order.")
        ),
        "modules": Field(
            ListOf(Text(nonempty=True), description="Named configs to run (-m), in order.")
        ),
        "kube_context": Field(Text(nonempty=True, description="--kube-context")),
        "namespace": Field(Text(nonempty=True, description="-n: the namespace to deploy to.")),
        "port_forward": Field(
            Text(
                pattern=f"{_COMBINABLE}(,{_COMBINABLE})*|off",
                pattern_hint="user, services, debug, pods (comma-combined, e.g. "
                "user,services) or off",
                description="--port-forward mode(s): user, services, debug, pods "
                "(comma-combined) or off.",
            ),
            default="user",
        ),
        "cleanup": Field(
            Boolean(description="--cleanup: delete what was deployed when stopped."),
            default=True,
        ),
        "status_check": Field(
            Boolean(description="--status-check: wait for deployed resources to stabilise."),
            default=True,
        ),
        "trigger": Field(
            Choice(
                ("notify", "polling", "manual"),
                description="--trigger: how skaffold notices changes (its default: notify).",
            )
        ),
        "env": Field(ENV),
        "args": Field(
            ListOf(
                Text(nonempty=True),
                description="Extra arguments of skaffold dev, appended as written "
                "(e.g. --skip-tests, -v=info).",
            )
        ),
        "stop_timeout": Field(
            Duration(
                description="Time skaffold gets to clean up after SIGINT before it is "
                "terminated (seconds or a duration such as 2m)."
            ),
            default=60,
        ),
    },
    description="Settings of a reloader of type skaffold (arguments of skaffold dev).",
)


@dataclass(frozen=True)
class SkaffoldSettings:
    """The ``skaffold:`` section: arguments of ``skaffold dev``."""

    file: str = "skaffold.yaml"
    profiles: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    kube_context: str | None = None
    namespace: str | None = None
    port_forward: str = "user"
    cleanup: bool = True
    status_check: bool = True
    trigger: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    stop_timeout: float = 60.0
    runtimevars: frozenset[str] = frozenset()  # names used as ${runtimevar:NAME}


def build_settings(section: Mapping[str, Any], ctx: SectionContext) -> SkaffoldSettings:
    env, used = ctx.env(section.get("env"), ("env",))
    args = []
    for index, arg in enumerate(section.get("args") or ()):
        text, names = ctx.expand(str(arg), ("args", index))
        args.append(text)
        used |= names
    return SkaffoldSettings(
        file=str(section.get("file", "skaffold.yaml")),
        profiles=tuple(section.get("profiles") or ()),
        modules=tuple(section.get("modules") or ()),
        kube_context=section.get("kube_context"),
        namespace=section.get("namespace"),
        port_forward=str(section.get("port_forward", "user")),
        cleanup=bool(section.get("cleanup", True)),
        status_check=bool(section.get("status_check", True)),
        trigger=section.get("trigger"),
        env=env,
        args=tuple(args),
        stop_timeout=float(section.get("stop_timeout", 60.0)),
        runtimevars=used,
    )


KIND = register_kind(
    Kind(
        NAME,
        manager=None,
        section=SECTION,
        build=build_settings,
        process_names=lambda settings: ["skaffold"],
        description="`skaffold dev`",
        builtin=True,
    )
)
