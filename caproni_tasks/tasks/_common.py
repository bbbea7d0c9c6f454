"""Small helpers shared by the task modules: settings with fallbacks, failing politely."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from invoke.exceptions import Exit

if TYPE_CHECKING:
    from invoke.context import Context

    from caproni_tasks.diagnostics import Diagnostic
    from caproni_tasks.packages.repository import NetworkOptions

#: Defaults of every ``caproni.*`` invoke setting. Read through `setting`, never from
#: ``c.config`` directly: invoke merges nested collection config one level deep only,
#: so a user's partial ``caproni:`` block must not wipe the other keys.
DEFAULTS: dict[str, Any] = {
    "ensure_file": "tools.ensure",
    "root": ".tools",
    "service_url": None,
    "cache_dir": None,
    "config": "caproni.yaml",
    "jobs": 4,
    # HTTP repositories (seconds): to connect, without a byte, for a whole download.
    "http_connect_timeout": 10,
    "http_stall_timeout": 30,
    "http_deadline": 1800,
    "http_retries": 2,
    # CIPD services: more root URLs speaking the CIPD protocol, and credentials for them.
    "cipd_services": None,  # a list, or one string of URLs separated by commas/spaces
    "auth_token": None,
    "auth_token_command": None,
    "max_package_size": None,  # bytes a package may unpack to (PackageLimits' default)
    "max_compression_ratio": None,  # unpacked:packed beyond which a package is refused
    "durable_data": False,  # ensure: flush installed files' contents before each commit
}


def setting(c: Context, key: str) -> Any:
    section = c.config.get("caproni", None)
    if isinstance(section, Mapping) and section.get(key) is not None:
        return section[key]
    return DEFAULTS.get(key)


def network_options(c: Context) -> NetworkOptions:
    """The ``http_*`` settings as `NetworkOptions` (a bad value stops the task)."""
    from caproni_tasks.packages.repository import NetworkOptions

    values: dict[str, float] = {}
    for key in ("connect_timeout", "stall_timeout", "deadline", "retries"):
        raw = setting(c, f"http_{key}")
        try:
            values[key] = int(raw) if key == "retries" else float(raw)
        except (TypeError, ValueError):
            fail(f"error: caproni.http_{key} must be a number, not {raw!r}")
        if values[key] < 0 or (values[key] == 0 and key != "retries"):
            fail(f"error: caproni.http_{key} must be a positive number")
    services = setting(c, "cipd_services") or ()
    if isinstance(services, str):  # one URL, or several separated by commas or spaces
        services = services.replace(",", " ").split()
    if not isinstance(services, Sequence) or not all(isinstance(s, str) for s in services):
        fail("error: caproni.cipd_services must be a list of service URLs")
    token, command = setting(c, "auth_token"), setting(c, "auth_token_command")
    if isinstance(command, Sequence) and not isinstance(command, str):
        import shlex

        command = shlex.join(str(word) for word in command)
    from caproni_tasks.packages.cache import default_cache_dir

    cache_dir = setting(c, "cache_dir")
    return NetworkOptions(
        connect_timeout=values["connect_timeout"],
        stall_timeout=values["stall_timeout"],
        deadline=values["deadline"],
        retries=int(values["retries"]),
        cipd_services=tuple(services),
        auth_token=str(token) if token else None,
        auth_token_command=str(command) if command else None,
        cache_dir=setting_path(c, "cache_dir") if cache_dir else default_cache_dir(),
    )


def project_dir(c: Context) -> Path:
    """The directory of the ``tasks.py`` in use (relative settings resolve against it).

    Falls back to the working directory when the collection was not loaded from a file.
    """
    prefix = getattr(c.config, "_project_prefix", None)
    if isinstance(prefix, str) and prefix:
        return Path(prefix)
    return Path.cwd()


def setting_path(c: Context, key: str, override: str | None = None) -> Path:
    """A path setting: the command-line value if given (relative to cwd), else the config
    value (relative to the project directory). A path no file can have stops the task."""
    if override:
        return checked_path(override, f"--{key.replace('_', '-')}").absolute()
    value = checked_path(str(setting(c, key)), f"caproni.{key}")
    return value if value.is_absolute() else project_dir(c) / value


#: Longest file name and path the kernel accepts (Linux and macOS: 255 and 4096 / 1024
#: bytes); longer ones fail with ENAMETOOLONG wherever they are used.
NAME_MAX = 255
PATH_MAX = 4096


def checked_path(value: str, option: str) -> Path:
    """``value`` as a path (``~`` expanded), or exit 2 with one line when it cannot name a
    file: empty, a NUL or other control character, a name longer than `NAME_MAX` or a
    path longer than `PATH_MAX` bytes. Every path a user types goes through here, so no
    task meets ``ValueError: embedded null byte`` or ENAMETOOLONG later on. Control
    characters in a typed path are a mistake, and they would garble messages."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    if not value:
        fail(f"{option}: empty path", 2)
    if "\x00" in value:
        fail(f"{option} {shown!r}: a path cannot contain a NUL character", 2)
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        fail(f"{option} {shown!r}: control characters in a path (a stray newline or tab?)", 2)
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # ~user with no such user, or no home directory
        fail(f"{option} {shown}: {exc}", 2)
    encoded = os.fsencode(path)
    if len(encoded) >= PATH_MAX:
        fail(f"{option} {shown}: path too long ({len(encoded)} bytes; the limit is {PATH_MAX})", 2)
    for part in encoded.split(b"/"):
        if len(part) > NAME_MAX:
            fail(
                f"{option} {shown}: a file name is too long "
                f"({len(part)} bytes; the limit is {NAME_MAX})",
                2,
            )
    return path


def int_option(
    value: int | str | None,
    option: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int = 0,
) -> int:
    """A whole-number option given as text (``--jobs 8``), or exit 2 with one line.

    Declare such options as ``str`` in the task: invoke casts ``int`` options itself and
    a value like ``--jobs abc`` then escapes as a ``ValueError`` traceback.
    """
    if value is None or value == "":
        return default
    try:
        number = value if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        fail(f"{option} {str(value)!r}: expected a whole number", 2)
    if minimum is not None and number < minimum:
        fail(f"{option} {number}: must be at least {minimum}", 2)
    if maximum is not None and number > maximum:
        fail(f"{option} {number}: must be at most {maximum}", 2)
    return number


def listed(value: Sequence[str] | None) -> list[str]:
    """Normalise an ``iterable`` task argument (invoke passes None for default tasks)."""
    return [v for v in (value or []) if v]


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the task with a message on stderr and an exit code, never a traceback.

    Commands the message names (``invoke ensure.resolve``) are worded as the user types
    them (``invoke dev.ensure.resolve``, ``caproni-tasks ensure.resolve``)."""
    from caproni_tasks.tasks._commands import say

    raise Exit(say(message.rstrip("\n")), code)


def print_diagnostics(
    diagnostics: Sequence[Diagnostic], fmt: str, sources: Mapping[str, str] | None = None
) -> None:
    from caproni_tasks.diagnostics import FORMATTERS, format_diagnostics

    if fmt not in FORMATTERS:
        fail(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATTERS)}", 2)
    from caproni_tasks.tasks._commands import say

    text = say(format_diagnostics(diagnostics, fmt, sources))
    # Machine formats go to stdout; human text also goes to stdout so it can be piped.
    sys.stdout.write(text)
    sys.stdout.flush()


def use_color(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def output_path(value: str, option: str) -> Path:
    """A file the user asked a task to write, refused (exit 2) unless its directory exists.

    Tools do not create directories nobody asked for: a typo in ``--output`` must not
    leave a tree of new directories behind.
    """
    if not value.strip():
        fail(f"{option}: empty path", 2)
    path = checked_path(value, option).absolute()
    if path.is_dir():
        fail(f"{option} {value}: is a directory; name a file", 2)
    if not path.parent.is_dir():
        missing = path.parent
        while not missing.parent.is_dir() and missing.parent != missing:
            missing = missing.parent
        if missing.exists():
            fail(f"{option} {value}: {missing} is not a directory", 2)
        fail(f"{option} {value}: directory {missing} does not exist (create it first)", 2)
    return path
