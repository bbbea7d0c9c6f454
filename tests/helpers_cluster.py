"""The kubectl/mirrord stand-ins and their "cluster" file, for tests of the mirror kind."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from helpers_session import InvokeSession

STANDINS = Path(__file__).resolve().parent / "standins"
MIRRORD_SCHEMA = Path(__file__).resolve().parent / "vendor" / "mirrord" / "mirrord-schema.json"


def deployment(
    name: str, namespace: str = "default", replicas: int = 2, container: str = "web"
) -> dict[str, Any]:
    """A Deployment as the API server returns it (server-owned fields included)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0b5c1f3e-1111-2222-3333-444455556666",
            "resourceVersion": "41",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": dict(labels),
            "annotations": {"deployment.kubernetes.io/revision": "3", "team": "web"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": container, "image": "example/web:1"}]},
            },
        },
    }


class Cluster:
    """The stand-ins' cluster: a JSON file of contexts, deployments and kubectl calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self.save({"current_context": "dev", "contexts": {"dev": {"deployments": {}}}})

    def load(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.path.write_text(json.dumps(data, indent=1))

    def context(self, name: str = "dev") -> dict[str, Any]:
        context: dict[str, Any] = self.load()["contexts"][name]
        return context

    def add(self, obj: dict[str, Any], context: str = "dev") -> None:
        data = self.load()
        ctx = data["contexts"].setdefault(context, {"deployments": {}})
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        ctx.setdefault("deployments", {})[key] = obj
        self.save(data)

    def set(self, key: str, value: Any, context: str = "dev") -> None:
        data = self.load()
        data["contexts"].setdefault(context, {"deployments": {}})[key] = value
        self.save(data)

    def get(self, name: str, namespace: str = "default", context: str = "dev") -> Any:
        return self.context(context).get("deployments", {}).get(f"{namespace}/{name}")

    def replicas(self, name: str, namespace: str = "default") -> int | None:
        obj = self.get(name, namespace)
        return None if obj is None else int(obj["spec"]["replicas"])

    def calls(self) -> list[list[str]]:
        calls: list[list[str]] = self.load().get("calls", [])
        return calls


def standin_env(base: dict[str, str], cluster: Path, log: Path) -> dict[str, str]:
    """``base`` with the stand-ins first on PATH (then this interpreter's directory)."""
    env = dict(base)
    env["PATH"] = os.pathsep.join(
        [str(STANDINS), str(Path(sys.executable).parent), env.get("PATH", os.defpath)]
    )
    env["KUBECTL_STANDIN_CLUSTER"] = str(cluster)
    env["MIRRORD_STANDIN_LOG"] = str(log)
    env["MIRRORD_STANDIN_SCHEMA"] = str(MIRRORD_SCHEMA)
    env.pop("MIRRORD_RESOLVED_CONFIG", None)
    return env


def mirrord_calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


class ClusterSession(InvokeSession):
    """An `InvokeSession` with the kubectl and mirrord stand-ins on PATH: ``cluster``
    is their cluster, ``mirrord_log`` what mirrord was called with (both in ``tmp``).
    `end` stops `invoke run` and lets `invoke clean` restore the cluster."""

    def __init__(
        self, root: Path, subprocess_env: dict[str, str], tmp: Path, *, log: Path | None = None
    ) -> None:
        self.cluster = Cluster(tmp / "cluster.json")
        self.mirrord_log = tmp / "mirrord.log"
        super().__init__(
            root, standin_env(subprocess_env, self.cluster.path, self.mirrord_log), log=log
        )

    def end(self) -> None:
        self.kill()
        self.invoke("clean")
