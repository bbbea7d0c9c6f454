"""The mirror kind's parts: kubectl command lines against the stand-in, the deployment
copy, Rust regex checks, and generated mirrord configs against mirrord's JSON Schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers_cluster import MIRRORD_SCHEMA, STANDINS, Cluster, deployment, standin_env

from caproni_tasks.reloader import kubectl as kube
from caproni_tasks.reloader import mirrord_config, rustregex


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    made = Cluster(tmp_path / "cluster.json")
    made.add(deployment("webservice", "gitlab"))
    return made


@pytest.fixture
def kubectl(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> kube.Kubectl:
    for key, value in standin_env({}, cluster.path, tmp_path / "mirrord.log").items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    return kube.Kubectl(str(STANDINS / "kubectl"))


# -- names and manifests ---------------------------------------------------------------


def test_copy_name_is_suffixed_and_shortened_to_a_dns_label() -> None:
    assert kube.copy_name("webservice") == "webservice-caproni"
    long = "a" * 60
    short = kube.copy_name(long)
    assert len(short) <= 63 and short.endswith("-caproni")
    assert kube.copy_name(long) == short  # stable
    assert kube.copy_name("b" * 60) != short
    dotted = kube.copy_name("web.service")
    assert "." not in dotted and dotted.endswith("-caproni") and len(dotted) <= 63


def test_copy_manifest_strips_server_fields_and_adds_our_labels() -> None:
    original = deployment("webservice", "gitlab", replicas=3)
    original["status"] = {"replicas": 3}
    original["metadata"]["managedFields"] = [{}]
    original["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    original["spec"]["paused"] = True
    manifest = kube.copy_manifest(original, name="webservice-caproni", session="s", replicas=3)
    meta = manifest["metadata"]
    assert meta["name"] == "webservice-caproni"
    for server_field in (
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
    ):
        assert server_field not in meta
    assert "status" not in manifest and "paused" not in manifest["spec"]
    assert meta["annotations"]["team"] == "web"
    assert "deployment.kubernetes.io/revision" not in meta["annotations"]
    assert "kubectl.kubernetes.io/last-applied-configuration" not in meta["annotations"]
    assert meta["annotations"][kube.ORIGINAL_REPLICAS_ANNOTATION] == "3"
    assert meta["labels"][kube.MANAGED_BY[0]] == kube.MANAGED_BY[1]
    assert manifest["spec"]["replicas"] == 1
    selector = manifest["spec"]["selector"]["matchLabels"]
    template = manifest["spec"]["template"]["metadata"]["labels"]
    assert selector == {"app": "webservice", kube.COPY_LABEL: "webservice"}
    assert all(template[k] == v for k, v in selector.items())
    # The original's selector does not select the copy's pods' extra label away, but
    # the copy's selector never matches the original's pods (they lack the label).
    assert kube.COPY_LABEL not in original["spec"]["template"]["metadata"]["labels"]
    assert original["metadata"]["uid"]  # the original is untouched


# -- kubectl: the exact command lines, against the stand-in ----------------------------


def test_command_lines_are_exactly_the_documented_ones() -> None:
    k = kube.Kubectl("kubectl", "kind-dev")
    assert k.argv(*k.get_args("web", "ns")) == [
        "kubectl",
        "get",
        "deployment",
        "web",
        "-n",
        "ns",
        "-o",
        "json",
        "--context",
        "kind-dev",
    ]
    assert kube.Kubectl("kubectl").argv(*k.apply_args()) == ["kubectl", "apply", "-f", "-"]
    assert k.scale_args("web", "ns", 0) == ["scale", "deployment/web", "--replicas=0", "-n", "ns"]
    assert k.rollout_args("web", "ns", 300) == [
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "ns",
        "--timeout=300s",
    ]
    assert k.delete_args("web", "ns") == [
        "delete",
        "deployment",
        "web",
        "-n",
        "ns",
        "--ignore-not-found",
    ]
    assert k.list_args("ns") == ["get", "deployments", "-n", "ns", "-o", "json"]


def test_get_scale_delete_against_the_standin(kubectl: kube.Kubectl, cluster: Cluster) -> None:
    got = kubectl.get("webservice", "gitlab")
    assert got is not None and got["spec"]["replicas"] == 2
    assert kubectl.get("missing", "gitlab") is None
    missing = kubectl.run(kubectl.get_args("missing", "gitlab"))
    assert missing.returncode == 1
    assert (
        missing.error_line == 'Error from server (NotFound): deployments.apps "missing" not found'
    )
    kubectl.scale("webservice", "gitlab", 0)
    assert cluster.replicas("webservice", "gitlab") == 0
    with pytest.raises(kube.KubectlError, match="NotFound"):
        kubectl.scale("missing", "gitlab", 1)
    kubectl.delete("missing", "gitlab")  # --ignore-not-found: no error
    assert [d["metadata"]["name"] for d in kubectl.list("gitlab")] == ["webservice"]
    assert kubectl.list("other") == []


def test_the_copy_applies_and_rolls_out_on_the_standin(
    kubectl: kube.Kubectl, cluster: Cluster
) -> None:
    original = kubectl.get("webservice", "gitlab")
    assert original is not None
    manifest = kube.copy_manifest(original, name="webservice-caproni", session="s", replicas=2)
    applied = kubectl.run(kubectl.apply_args(), stdin=json.dumps(manifest))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == "deployment.apps/webservice-caproni created\n"
    rollout = kubectl.run(kubectl.rollout_args("webservice-caproni", "gitlab", 5))
    assert rollout.stdout == 'deployment "webservice-caproni" successfully rolled out\n'
    # Applying the unstripped original under a new name is refused by the stand-in.
    raw = dict(original, metadata=dict(original["metadata"], name="x"))
    refused = kubectl.run(kubectl.apply_args(), stdin=json.dumps(raw))
    assert refused.returncode == 1
    cluster.set("rollout", "timeout")
    stuck = kubectl.run(kubectl.rollout_args("webservice-caproni", "gitlab", 1))
    assert stuck.returncode == 1
    assert stuck.error_line == "error: timed out waiting for the condition"


def test_unreachable_cluster_and_unknown_context(kubectl: kube.Kubectl, cluster: Cluster) -> None:
    elsewhere = kube.Kubectl(kubectl.program, "nope")
    with pytest.raises(kube.KubectlError, match="context was not found"):
        elsewhere.list("gitlab")
    cluster.set("reachable", False)
    with pytest.raises(kube.KubectlError, match="was refused"):
        kubectl.list("gitlab")


def test_restore_leftover_copies_is_idempotent(
    kubectl: kube.Kubectl, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{STANDINS}:{__import__('os').environ['PATH']}")
    config = tmp_path / "caproni.yaml"
    original = kubectl.get("webservice", "gitlab")
    assert original is not None
    manifest = kube.copy_manifest(original, name="webservice-caproni", session="s", replicas=2)
    assert kubectl.run(kubectl.apply_args(), stdin=json.dumps(manifest)).returncode == 0
    kubectl.scale("webservice", "gitlab", 0)
    dead = kube.CopyRecords(str(config), 999_999_999, 1.0)
    dead.add(kube.CopyRecord("web", "gitlab", "webservice", "webservice-caproni", 2))
    assert kube.pending_copies(config)
    done, failed = kube.restore_leftover_copies(config)
    assert failed == [] and len(done) == 1
    assert cluster.replicas("webservice", "gitlab") == 2
    assert cluster.get("webservice-caproni", "gitlab") is None
    assert not kube.pending_copies(config)
    assert kube.restore_leftover_copies(config) == ([], [])


# -- Rust regexes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        r"^/etc/(?<path>.*)",  # Rust's named group: Python's re rejects it
        r"(?P<a>x)\z",
        r"[a-z&&[^aeiou]]",
        r"x(?i)y",
        r"\p{Greek}+",
        r"\x{1F600}",
        r"[[:alpha:]]+",
        r"^/var/run/secrets/.+",
    ],
)
def test_rust_regex_accepted(pattern: str) -> None:
    assert rustregex.check(pattern).ok, rustregex.check(pattern).problems


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(?=x)", "look-ahead"),
        (r"(?<=a)b", "look-behind"),
        (r"(a)\1", "backreferences"),
        (r"a{", "escaped"),
        (r"a*+", "possessive"),
        (r"(?>a)", "atomic"),
        (r"end\Z", r"\\z"),
        (r"[z-a]", "reversed"),
        (r"(abc", "missing"),
        (r"(?<a>x)(?<a>y)", "duplicate"),
    ],
)
def test_rust_regex_rejected(pattern: str, why: str) -> None:
    problems = rustregex.check(pattern).problems
    assert problems and any(__import__("re").search(why, p) for p in problems), problems


def test_replacement_references_follow_rust_rules() -> None:
    info = rustregex.check(r"^/secret/(?<file>[^/]+)$")
    assert info.groups == 1 and info.names == ["file"]
    assert rustregex.replacement_problems("./${file}", info) == []
    assert rustregex.replacement_problems("./$file.txt", info) == []
    assert rustregex.replacement_problems("$$HOME/$1", info) == []
    [problem] = rustregex.replacement_problems("./$1a", info)
    assert "${1}a" in problem
    assert rustregex.replacement_problems("${nope}", info)


# -- mirrord configs -------------------------------------------------------------------


SCHEMA: dict[str, Any] = json.loads(MIRRORD_SCHEMA.read_text())

SECTIONS: list[dict[str, Any]] = [
    {},
    {"filesystem": {"mode": "localwithoverrides", "read_only": ["^/etc/.*"]}},
    {
        "filesystem": {
            "mode": "write",
            "read_write": r".+\.json",
            "local": [r".+\.js"],
            "not_found": [r"^/nope"],
            "mapping": {r"^/secret/(?<file>.*)": "./secrets/${file}"},
        },
        "network": {"outgoing": {"ignore_localhost": True}},
    },
    {"filesystem": "local", "network": {"incoming": "steal"}, "env": False},
    {
        "network": {
            "incoming": {"mode": "steal", "ports": [80], "port_mapping": [[7777, 8888]]},
            "outgoing": {"tcp": True, "udp": False, "filter": {"local": ["127.0.0.1:5432"]}},
            "dns": False,
        },
        "env": {
            "exclude": "ENABLE_BOOTSNAP;RAILS_ENV",
            "override": {"PORT": 8080, "DEBUG": True},
            "unset": ["SECRET"],
        },
    },
]


@pytest.mark.parametrize("section", SECTIONS)
def test_generated_configs_match_mirrords_schema(section: dict[str, Any]) -> None:
    for key, check in (
        ("filesystem", mirrord_config.check_filesystem),
        ("network", mirrord_config.check_network),
        ("env", mirrord_config.check_env),
    ):
        assert check(section.get(key)) == [], key
    generated = mirrord_config.generate(**section)
    jsonschema.Draft202012Validator(SCHEMA).validate(generated)
    assert set(generated["feature"]) == {
        {"filesystem": "fs", "network": "network", "env": "env"}[k] for k in section
    }


@pytest.mark.parametrize(
    ("check", "raw", "code"),
    [
        (mirrord_config.check_filesystem, {"mode": "readwrite"}, "mirror-fs-mode"),
        (mirrord_config.check_filesystem, "remote", "mirror-fs-mode"),
        (mirrord_config.check_filesystem, {"read_only": ["(?=x)"]}, "mirror-regex"),
        (mirrord_config.check_filesystem, {"mapping": {"(": "x"}}, "mirror-regex"),
        (mirrord_config.check_filesystem, {"readonly": ["x"]}, "mirror-unknown-key"),
        (mirrord_config.check_network, {"incoming": "copy"}, "mirror-network-mode"),
        (mirrord_config.check_network, {"incoming": {"mode": "grab"}}, "mirror-network-mode"),
        (mirrord_config.check_network, {"outgoing": {"tcp": "yes"}}, "mirror-type"),
        (mirrord_config.check_network, {"incoming": {"ports": [0]}}, "mirror-type"),
        (mirrord_config.check_env, {"include": "A", "exclude": "B"}, "mirror-conflict"),
        (mirrord_config.check_env, {"mapping": {"a{": "1"}}, "mirror-regex"),
    ],
)
def test_bad_sections_are_found(check: Any, raw: Any, code: str) -> None:
    problems = check(raw)
    assert [p.code for p in problems if p.severity == "error"] == [code], problems


def test_mirrord_standin_checks_config_against_schema(tmp_path: Path, cluster: Cluster) -> None:
    env = standin_env(dict(__import__("os").environ), cluster.path, tmp_path / "m.log")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(mirrord_config.generate(filesystem="local")))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"feature": {"fs": {"mode": "nope"}}}))
    base = [
        "mirrord",
        "exec",
        "--target",
        "deployment/webservice/container/web",
        "--target-namespace",
        "gitlab",
        "-f",
    ]
    ok = subprocess.run(
        [*base, str(good), "--", "/bin/sh", "-c", "echo hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0 and ok.stdout == "hi\n", ok.stderr
    refused = subprocess.run(
        [*base, str(bad), "--", "true"], env=env, capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 1 and "invalid config" in refused.stderr
    gone = subprocess.run(
        [*base[:3], "deployment/nope", *base[4:], str(good), "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert gone.returncode == 1 and "not found" in gone.stderr
