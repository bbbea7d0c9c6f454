"""The mirrord config a ``mirror`` reloader generates, and the checks of its sections.

A reloader's ``filesystem``, ``network`` and ``env`` settings become ``feature.fs``,
``feature.network`` and ``feature.env`` of one JSON config per reloader, which every
``mirrord exec`` of that reloader reads (``-f``). The keys are mirrord's own, so the
sections are checked here the way mirrord reads them: known keys, fs modes
(``local``, ``localwithoverrides``, ``read``, ``write``), incoming modes (``mirror``,
``steal``, ``off``), booleans and ports, and every regular expression in Rust syntax
(`caproni_tasks.reloader.rustregex`). The tests validate generated configs against
mirrord's published JSON Schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from caproni_tasks.reloader import rustregex

__all__ = [
    "FS_MODES",
    "INCOMING_MODES",
    "Problem",
    "check_env",
    "check_filesystem",
    "check_network",
    "generate",
    "write_config",
]

FS_MODES = ("local", "localwithoverrides", "read", "write")
INCOMING_MODES = ("mirror", "steal", "off")
CONCURRENT_STEAL = ("override", "continue", "abort")
FS_PATTERN_KEYS = ("read_only", "read_write", "local", "not_found")
FS_KEYS = (*FS_PATTERN_KEYS, "mode", "mapping", "readonly_file_buffer")
NETWORK_KEYS = ("incoming", "outgoing", "dns", "ipv6")
INCOMING_KEYS = (
    "mode",
    "http_filter",
    "ports",
    "ignore_ports",
    "ignore_localhost",
    "listen_ports",
    "port_mapping",
    "on_concurrent_steal",
    "tls_delivery",
    "https_delivery",
)
OUTGOING_KEYS = ("tcp", "udp", "ignore_localhost", "filter", "unix_streams")
ENV_KEYS = ("include", "exclude", "override", "env_file", "load_from_process", "mapping", "unset")

Steps = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One finding, at ``steps`` below the section (keys and list indexes)."""

    steps: Steps
    code: str
    message: str
    severity: Literal["error", "warning"] = "error"


def _keys(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str, at: Steps) -> list[Problem]:
    return [
        Problem(
            (*at, key),
            "mirror-unknown-key",
            f"{where}: unknown key {key!r} (mirrord knows {', '.join(allowed)})",
        )
        for key in raw
        if key not in allowed
    ]


def _bool(value: Any, where: str, at: Steps) -> list[Problem]:
    if value is None or isinstance(value, bool):
        return []
    return [Problem(at, "mirror-type", f"{where}: expected true or false; found {value!r}")]


def _regex(pattern: Any, where: str, at: Steps) -> tuple[list[Problem], rustregex.RegexInfo]:
    if not isinstance(pattern, str):
        info = rustregex.RegexInfo(problems=["not a string"])
        return [
            Problem(at, "mirror-type", f"{where}: expected a regular expression; found {pattern!r}")
        ], info
    info = rustregex.check(pattern)
    return [
        Problem(at, "mirror-regex", f"{where}: {pattern!r} is not a valid (Rust) regex: {problem}")
        for problem in info.problems
    ], info


def _patterns(value: Any, where: str, at: Steps) -> list[Problem]:
    """A regex or a list of them (mirrord's ``VecOrSingle``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return _regex(value, where, at)[0]
    if isinstance(value, list):
        found: list[Problem] = []
        for index, item in enumerate(value):
            found.extend(_regex(item, f"{where}[{index}]", (*at, index))[0])
        return found
    return [Problem(at, "mirror-type", f"{where}: expected a regex or a list of them")]


def _strings(value: Any, where: str, at: Steps) -> list[Problem]:
    if value is None or isinstance(value, str):
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return []
    return [Problem(at, "mirror-type", f"{where}: expected a string or a list of strings")]


def _ports(value: Any, where: str, at: Steps, *, pairs: bool = False) -> list[Problem]:
    if value is None:
        return []

    def port(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536

    good = isinstance(value, list) and all(
        (isinstance(v, list) and len(v) == 2 and all(map(port, v))) if pairs else port(v)
        for v in value
    )
    if good:
        return []
    shape = "a list of [local, remote] port pairs" if pairs else "a list of ports (1-65535)"
    return [Problem(at, "mirror-type", f"{where}: expected {shape}")]


def _expect_mapping(value: Any, where: str, at: Steps, of: str) -> list[Problem]:
    """A problem when ``value`` is given and is not a mapping (``of`` what to what)."""
    if value is None or isinstance(value, Mapping):
        return []
    return [Problem(at, "mirror-type", f"{where}: expected a mapping of {of}")]


def _mode(value: Any, modes: tuple[str, ...], where: str, at: Steps, code: str) -> list[Problem]:
    if value is None or value in modes:
        return []
    return [Problem(at, code, f"{where}: unknown mode {value!r} (use {', '.join(modes)})")]


def check_filesystem(raw: Any) -> list[Problem]:
    """``filesystem:``: true/false, a mode, or mirrord's advanced fs object."""
    where = "filesystem"
    if raw is None or isinstance(raw, bool):
        return []
    if isinstance(raw, str):
        return _mode(raw, FS_MODES, where, (), "mirror-fs-mode")
    if not isinstance(raw, Mapping):
        return [Problem((), "mirror-type", f"{where}: expected a mode or a mapping")]
    found = _keys(raw, FS_KEYS, where, ())
    found += _mode(raw.get("mode"), FS_MODES, f"{where}.mode", ("mode",), "mirror-fs-mode")
    for key in FS_PATTERN_KEYS:
        found += _patterns(raw.get(key), f"{where}.{key}", (key,))
    buffer = raw.get("readonly_file_buffer")
    if buffer is not None and (
        not isinstance(buffer, int) or isinstance(buffer, bool) or buffer < 0
    ):
        found.append(
            Problem(
                ("readonly_file_buffer",),
                "mirror-type",
                f"{where}.readonly_file_buffer: expected a number of bytes",
            )
        )
    mapping = raw.get("mapping")
    found += _expect_mapping(mapping, f"{where}.mapping", ("mapping",), "regex to replacement")
    if isinstance(mapping, Mapping):
        found += _mapping(mapping, f"{where}.mapping", ("mapping",))
    return found


def _mapping(mapping: Mapping[str, Any], where: str, at: Steps) -> list[Problem]:
    """regex → replacement, as Rust's ``Regex::replace`` reads the replacement."""
    found: list[Problem] = []
    for pattern, replacement in mapping.items():
        problems, info = _regex(pattern, f"{where} key", (*at, pattern))
        found += problems
        if not isinstance(replacement, str):
            found.append(
                Problem(
                    (*at, pattern),
                    "mirror-type",
                    f"{where}[{pattern!r}]: expected a replacement string",
                )
            )
        elif info.ok:
            found += [
                Problem(
                    (*at, pattern),
                    "mirror-mapping-ref",
                    f"{where}[{pattern!r}]: {message}",
                    "warning",
                )
                for message in rustregex.replacement_problems(replacement, info)
            ]
    return found


def check_network(raw: Any) -> list[Problem]:
    """``network:``: mirrord's ``feature.network`` (incoming, outgoing, dns, ipv6)."""
    where = "network"
    if raw is None or isinstance(raw, bool):
        return []
    if not isinstance(raw, Mapping):
        return [Problem((), "mirror-type", f"{where}: expected a mapping")]
    found = _keys(raw, NETWORK_KEYS, where, ())
    found += _incoming(raw.get("incoming"))
    found += _outgoing(raw.get("outgoing"))
    dns = raw.get("dns")
    if dns is not None and not isinstance(dns, bool):
        if not isinstance(dns, Mapping):
            found.append(
                Problem(("dns",), "mirror-type", f"{where}.dns: expected true, false or a mapping")
            )
        else:
            found += _keys(dns, ("enabled", "filter"), f"{where}.dns", ("dns",))
            found += _bool(dns.get("enabled"), f"{where}.dns.enabled", ("dns", "enabled"))
    found += _bool(raw.get("ipv6"), f"{where}.ipv6", ("ipv6",))
    return found


def _incoming(value: Any) -> list[Problem]:
    where, at = "network.incoming", ("incoming",)
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, str):
        return _mode(value, INCOMING_MODES, where, at, "mirror-network-mode")
    if not isinstance(value, Mapping):
        return [Problem(at, "mirror-type", f"{where}: expected a mode or a mapping")]
    found = _keys(value, INCOMING_KEYS, where, at)
    found += _mode(
        value.get("mode"), INCOMING_MODES, f"{where}.mode", (*at, "mode"), "mirror-network-mode"
    )
    found += _bool(
        value.get("ignore_localhost"), f"{where}.ignore_localhost", (*at, "ignore_localhost")
    )
    for key in ("ports", "ignore_ports"):
        found += _ports(value.get(key), f"{where}.{key}", (*at, key))
    for key in ("listen_ports", "port_mapping"):
        found += _ports(value.get(key), f"{where}.{key}", (*at, key), pairs=True)
    steal = value.get("on_concurrent_steal")
    if steal is not None and steal not in CONCURRENT_STEAL:
        found.append(
            Problem(
                (*at, "on_concurrent_steal"),
                "mirror-network-mode",
                f"{where}.on_concurrent_steal: use {', '.join(CONCURRENT_STEAL)}",
            )
        )
    http = value.get("http_filter")
    if isinstance(http, Mapping):
        for key in ("header_filter", "path_filter", "body_filter"):
            if isinstance(http.get(key), str):
                found += _regex(http[key], f"{where}.http_filter.{key}", (*at, "http_filter", key))[
                    0
                ]
    elif http is not None and not isinstance(http, bool):
        found.append(
            Problem((*at, "http_filter"), "mirror-type", f"{where}.http_filter: expected a mapping")
        )
    return found


def _outgoing(value: Any) -> list[Problem]:
    where, at = "network.outgoing", ("outgoing",)
    if value is None or isinstance(value, bool):
        return []
    if not isinstance(value, Mapping):
        return [Problem(at, "mirror-type", f"{where}: expected true, false or a mapping")]
    found = _keys(value, OUTGOING_KEYS, where, at)
    for key in ("tcp", "udp", "ignore_localhost"):
        found += _bool(value.get(key), f"{where}.{key}", (*at, key))
    found += _patterns(value.get("unix_streams"), f"{where}.unix_streams", (*at, "unix_streams"))
    flt = value.get("filter")
    if flt is not None:
        if not isinstance(flt, Mapping):
            found.append(
                Problem(
                    (*at, "filter"),
                    "mirror-type",
                    f"{where}.filter: expected a mapping with local or remote",
                )
            )
        else:
            found += _keys(flt, ("local", "remote"), f"{where}.filter", (*at, "filter"))
            if "local" in flt and "remote" in flt:
                found.append(
                    Problem(
                        (*at, "filter"),
                        "mirror-conflict",
                        f"{where}.filter: local and remote exclude each other; use one",
                    )
                )
            for key in ("local", "remote"):
                found += _strings(flt.get(key), f"{where}.filter.{key}", (*at, "filter", key))
    return found


def check_env(raw: Any) -> list[Problem]:
    """``env:`` of the mirror section: mirrord's ``feature.env`` (which remote
    variables the local process gets)."""
    where = "env"
    if raw is None or isinstance(raw, bool):
        return []
    if not isinstance(raw, Mapping):
        return [Problem((), "mirror-type", f"{where}: expected true, false or a mapping")]
    found = _keys(raw, ENV_KEYS, where, ())
    if raw.get("include") is not None and raw.get("exclude") is not None:
        found.append(
            Problem(
                ("exclude",),
                "mirror-conflict",
                f"{where}: include and exclude exclude each other (mirrord refuses both); use one",
            )
        )
    for key in ("include", "exclude", "unset"):
        found += _strings(raw.get(key), f"{where}.{key}", (key,))
    found += _bool(
        raw.get("load_from_process"), f"{where}.load_from_process", ("load_from_process",)
    )
    env_file = raw.get("env_file")
    if env_file is not None and not isinstance(env_file, str):
        found.append(Problem(("env_file",), "mirror-type", f"{where}.env_file: expected a path"))
    found += _expect_mapping(
        raw.get("override"), f"{where}.override", ("override",), "names to values"
    )
    mapping = raw.get("mapping")
    found += _expect_mapping(mapping, f"{where}.mapping", ("mapping",), "regex to value")
    if isinstance(mapping, Mapping):
        for pattern in mapping:
            found += _regex(pattern, f"{where}.mapping key", ("mapping", pattern))[0]
    return found


def _stringify(value: Any) -> Any:
    """Values mirrord expects as strings (env override/mapping values) from YAML scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def generate(
    *,
    filesystem: Any = None,
    network: Any = None,
    env: Any = None,
) -> dict[str, Any]:
    """The mirrord config: ``{"feature": {"fs": …, "network": …, "env": …}}`` with
    only the sections that were written (mirrord's defaults apply to the others)."""
    feature: dict[str, Any] = {}
    if filesystem is not None and filesystem != {}:
        feature["fs"] = _plain(filesystem)
    if network is not None and network != {}:
        feature["network"] = _plain(network)
    if env is not None and env != {}:
        section = _plain(env)
        if isinstance(section, dict):
            for key in ("override", "mapping"):
                if isinstance(section.get(key), dict):
                    section[key] = {k: _stringify(v) for k, v in section[key].items()}
        feature["env"] = section
    return {"feature": feature}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    """Write the config where mirrord reads it (``.json``: mirrord picks the format by
    extension); private to the user."""
    from caproni_tasks.atomicfile import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps(config, indent=2) + "\n", mode=0o600, durable=False)
