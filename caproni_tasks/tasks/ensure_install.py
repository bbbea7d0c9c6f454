"""``invoke ensure`` (install), ``ensure.resolve`` and ``ensure.verify``.

Thin: options and settings in, `caproni_tasks.packages` does the work, output out.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from caproni_tasks.tasks._common import (
    fail,
    int_option,
    network_options,
    output_path,
    project_dir,
    setting,
    setting_path,
)

if TYPE_CHECKING:
    from caproni_tasks.packages.installer import Desired, InstallResult
    from caproni_tasks.packages.pinning import EnsureSource
    from caproni_tasks.packages.repository import Repository

_COMMON_HELP = {
    "ensure_file": "The ensure file (default: caproni.ensure_file, 'tools.ensure').",
    "service_url": "Repository URL or directory, used when the file has no $ServiceURL "
    "(default: caproni.service_url).",
}

#: Parallel downloads and extractions beyond this only add threads.
MAX_JOBS = 256


@task(
    default=True,
    auto_shortflags=False,
    help={
        **_COMMON_HELP,
        "root": "Directory to install into (default: caproni.root, '.tools').",
        "cache_dir": "Instance cache (default: caproni.cache_dir, else the user cache dir).",
        "dry_run": "Print the plan and change nothing.",
        "json": "Write the result (or the error) as CIPD-shaped JSON to this file.",
        "jobs": "Parallel downloads and extractions (default: caproni.jobs, 4).",
        "paranoid": "Override $ParanoidMode: NotParanoid, CheckPresence or CheckIntegrity.",
        "lock_timeout": "Seconds to wait for another run on the same root (default 600).",
    },
)
def install(
    c: Context,
    ensure_file: str | None = None,
    root: str | None = None,
    service_url: str | None = None,
    cache_dir: str | None = None,
    dry_run: bool = False,
    json: str | None = None,
    jobs: str = "",
    paranoid: str | None = None,
    lock_timeout: str = "600",
) -> None:
    """Make the root match the ensure file: install, update, remove, repair packages.

    With $ResolvedVersions every version comes from that file (write it with
    ``invoke ensure.resolve``). A root this creates gets a ``.gitignore`` of ``*``.
    """
    from caproni_tasks.packages.installer import PARANOID_MODES, Installer, InstallError
    from caproni_tasks.packages.pinning import PinningError
    from caproni_tasks.packages.progress import make_reporter

    json_path = output_path(json, "--json") if json else None  # first: errors go there
    try:
        workers = int_option(jobs, "--jobs", minimum=1, maximum=MAX_JOBS) or int_option(
            setting(c, "jobs"), "caproni.jobs", minimum=1, maximum=MAX_JOBS, default=4
        )
        wait_seconds = int_option(lock_timeout, "--lock-timeout", minimum=0, default=600)
        if paranoid and paranoid not in PARANOID_MODES:
            fail(f"--paranoid {paranoid!r}: choose one of {', '.join(PARANOID_MODES)}", 2)
    except Exit as exc:  # a bad flag value: exit 2, and the JSON says so as for any error
        _write_json(json_path, {"error": str(exc.message), "error_code": "bad_argument_error"})
        raise
    try:
        source = _source_loader(c, ensure_file)
        repository = _repository_factory(c, source, service_url, cache_dir)
        desired, file_mode = _desired(c, ensure_file, source, repository)
        mode = paranoid or file_mode or "NotParanoid"
        reporter = make_reporter()
        try:
            installer = Installer(
                setting_path(c, "root", root),
                _cache(c, cache_dir),
                repository,
                jobs=workers,
                reporter=reporter,
                lock_timeout=float(wait_seconds),
                on_lock_wait=lambda: _say_waiting(setting_path(c, "root", root), wait_seconds),
                limits=_package_limits(c),
                durable_data=bool(setting(c, "durable_data")),
            )
            try:
                result = installer.ensure(desired, mode, dry_run=dry_run)
            except KeyboardInterrupt:
                reporter.close()
                _interrupted(installer, desired, mode, json_path)
        finally:
            reporter.close()
    except (PinningError, InstallError) as exc:
        message = str(exc) + _default_service_hint(c, ensure_file, service_url)
        _write_json(
            json_path,
            {"error": message, "error_code": exc.error_code}
            | ({"error_details": exc.details} if exc.details else {}),
        )
        fail(message)
    except OSError as exc:  # the root or cache not writable, disk full, …
        message = f"cannot install into {setting_path(c, 'root', root)}: {exc}"
        _write_json(json_path, {"error": message, "error_code": "io_error"})
        fail(message)
    _report(result)
    _write_json(json_path, {"result": _json_result(desired)})


@task(auto_shortflags=False, help=_COMMON_HELP)
def resolve(c: Context, ensure_file: str | None = None, service_url: str | None = None) -> None:
    """Write the $ResolvedVersions file for every $VerifiedPlatform (the host if none)."""
    from caproni_tasks.atomicfile import write_atomic
    from caproni_tasks.ensure import VersionsFile
    from caproni_tasks.packages.pinning import (
        PinningError,
        RepositoryResolver,
        missing_instances,
        resolve_all_platforms,
    )

    try:
        source = _load(c, ensure_file)
        target = source.versions_path
        if target is None:
            fail(
                f"{source.path} has no $ResolvedVersions: add a line such as "
                f"'$ResolvedVersions {source.path.stem}.versions' to its settings, then run "
                "'invoke ensure.resolve' again"
            )
        resolver = RepositoryResolver(_repository_factory(c, lambda: source, service_url))
        found = resolve_all_platforms(source, resolver)
        if found.error is not None:
            fail(found.error)
        missing = missing_instances(source, found, resolver.repository)
    except PinningError as exc:
        fail(str(exc))
    if missing:
        fail("\n".join(missing))
    versions = VersionsFile()
    for (package, version), iid in sorted(found.entries.items()):
        versions.add(package, version, iid)
    text = versions.serialize()
    try:
        old = target.read_text(encoding="utf-8")
    except OSError:
        old = None
    platforms = ", ".join(f"{o}-{a}" for o, a in source.platforms())
    if old == text:
        print(f"{target} is up to date ({_entries(len(found.entries))}; {platforms})")
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text)
    except OSError as exc:
        fail(f"cannot write the versions file {target}: {exc.strerror or exc}")
    print(f"wrote {target}: {_entries(len(found.entries))} for {platforms}")


@task(auto_shortflags=False, help=_COMMON_HELP)
def verify(c: Context, ensure_file: str | None = None, service_url: str | None = None) -> None:
    """Check (installing nothing) that every platform resolves and pins are current.

    Every package must resolve for every $VerifiedPlatform (the host if none) and the
    $ResolvedVersions file, if any, must match; exit 1 otherwise (update it with
    ``invoke ensure.resolve``).
    """
    from caproni_tasks.packages.pinning import (
        PinningError,
        RepositoryResolver,
        entries_of,
        missing_instances,
        read_versions_file,
        resolve_all_platforms,
        stale_entries,
    )

    try:
        source = _load(c, ensure_file)
        resolver = RepositoryResolver(_repository_factory(c, lambda: source, service_url))
        found = resolve_all_platforms(source, resolver)
        problems = [found.error] if found.error is not None else []
        if found.error is None:
            problems += missing_instances(source, found, resolver.repository)
        target = source.versions_path
        if target is not None and found.error is None:
            if not target.exists():
                problems.append(
                    f"{target} does not exist: run 'invoke ensure.resolve' to create it"
                )
            else:
                stale = stale_entries(entries_of(read_versions_file(target)), found.entries)
                if stale:
                    problems.append(
                        f"{target} is stale; run 'invoke ensure.resolve' to update it:\n  "
                        + "\n  ".join(str(s) for s in stale)
                    )
    except PinningError as exc:
        fail(str(exc))
    if problems:
        fail("\n".join(problems))
    platforms = ", ".join(f"{o}-{a}" for o, a in source.platforms())
    tail = f"; {target} is up to date" if target is not None else ""
    print(f"{source.path}: every package resolves for {platforms}{tail}")


# --- helpers ------------------------------------------------------------------------------


def _load(c: Context, ensure_file: str | None) -> EnsureSource:
    from caproni_tasks.packages.pinning import EnsureSource

    return EnsureSource.load(setting_path(c, "ensure_file", ensure_file))


def _source_loader(c: Context, ensure_file: str | None) -> Callable[[], EnsureSource]:
    """The ensure file, parsed on first use only."""
    loaded: list[EnsureSource] = []

    def source() -> EnsureSource:
        if not loaded:
            loaded.append(_load(c, ensure_file))
        return loaded[0]

    return source


def _desired(
    c: Context,
    ensure_file: str | None,
    source: Callable[[], EnsureSource],
    repository: Callable[[], Repository],
) -> tuple[list[Desired], str | None]:
    """What the root should hold, and the file's $ParanoidMode. A pinned file unchanged
    since a run recorded it is not parsed at all (`caproni_tasks.packages.pinned_cache`):
    a no-op run then imports no parser."""
    from caproni_tasks.packages import pinned_cache
    from caproni_tasks.packages.installer import Desired
    from caproni_tasks.packages.pinning import desired_from

    path = setting_path(c, "ensure_file", ensure_file)
    recorded = pinned_cache.lookup(path)
    if recorded is not None:
        return [Desired(*d) for d in recorded.desired], recorded.paranoid_mode
    parsed = source()
    versions = parsed.versions_path
    before = pinned_cache.versions_digest(versions) if versions is not None else None
    desired = desired_from(parsed, repository)
    if versions is not None and before is not None:
        pinned_cache.remember(
            path,
            parsed.text,
            versions,
            before,
            tuple((d.subdir, d.package, d.instance_id) for d in desired),
            parsed.file.paranoid_mode,
        )
    return desired, parsed.file.paranoid_mode


def _repository_factory(
    c: Context,
    source: Callable[[], EnsureSource],
    cli_url: str | None,
    cache_dir: str | None = None,
) -> Callable[[], Repository]:
    """A memoised opener: the repository is chosen and opened on first use only, so a
    run that needs no repository (everything pinned and installed) needs none set.
    A CIPD service remembers resolved tags in the instance cache directory."""
    opened: list[Repository] = []

    def factory() -> Repository:
        if not opened:
            import dataclasses

            choice = source().service_url(cli_url, setting(c, "service_url"), project_dir(c))
            network = network_options(c)
            if cache_dir:
                network = dataclasses.replace(network, cache_dir=_cache(c, cache_dir).directory)
            opened.append(choice.open(network))
        return opened[0]

    return factory


def _default_service_hint(c: Context, ensure_file: str | None, cli_url: str | None) -> str:
    """A line telling that the cipd client's default service was used because nothing
    named a repository (a forgotten setting is likelier than a wish to use it)."""
    from caproni_tasks.packages.pinning import PinningError

    try:
        choice = _load(c, ensure_file).service_url(cli_url, setting(c, "service_url"))
    except PinningError:
        return ""
    if not choice.origin.startswith("the default service"):
        return ""
    return f"\nnote: the repository was {choice.origin}"


def _cache(c: Context, override: str | None) -> Any:
    from caproni_tasks.packages.cache import InstanceCache, default_cache_dir

    if override or setting(c, "cache_dir"):
        return InstanceCache(setting_path(c, "cache_dir", override))
    return InstanceCache(default_cache_dir())


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def _say_waiting(root: Path, timeout: int) -> None:
    from caproni_tasks.tasks._commands import say

    print(
        say(
            f"another 'invoke ensure' is working on {root}; waiting for it to finish "
            f"(up to {timeout}s, --lock-timeout)"
        ),
        file=sys.stderr,
        flush=True,
    )


#: Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def _interrupted(installer: Any, desired: list[Desired], mode: str, json_path: Path | None) -> None:
    """Stop after Ctrl-C saying what state the root is in (one line, exit 130)."""
    from caproni_tasks.packages.planning import load_state

    root = installer.root
    try:
        state = load_state(root)
        done = installer.plan(desired, mode, state).is_noop and not state.has_leftovers()
    except Exception:  # the state could not be read: say the safe thing
        done = False
    if done:
        message = f"interrupted: {root} already matches the ensure file; nothing is left to do"
    else:
        message = (
            f"interrupted: {root} is part-way through this run; each package in it is "
            "wholly its old or its new version, and the next 'invoke ensure' finishes "
            "or rolls back the rest"
        )
    _write_json(json_path, {"error": message, "error_code": "interrupted"})
    fail(message, INTERRUPTED)


def _report(result: InstallResult) -> None:
    if result.dry_run:
        for action in result.plan.actions:
            print(f"would {action.describe()}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(result.summary())


def _json_result(desired: list[Desired]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for d in desired:
        out.setdefault(d.subdir, []).append({"package": d.package, "instance_id": d.instance_id})
    return out


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    import json as json_module

    from caproni_tasks.atomicfile import write_atomic

    try:
        write_atomic(path, json_module.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        problem = f"cannot write the --json file {path}: {exc.strerror or exc}"
        fail(f"{data['error']}\n{problem}" if "error" in data else problem)


def _package_limits(c: Context) -> Any:
    """`PackageLimits` from the ``caproni.max_package_size`` / ``max_compression_ratio``
    settings (bytes, and unpacked:packed)."""
    from caproni_tasks.packages.limits import PackageLimits

    defaults = PackageLimits()
    values: dict[str, float] = {}
    for key, default in (
        ("max_package_size", defaults.max_total_size),
        ("max_compression_ratio", defaults.max_ratio),
    ):
        raw = setting(c, key)
        try:
            value = float(raw) if raw is not None else float(default)
        except (TypeError, ValueError):
            fail(f"setting caproni.{key} must be a number, not {raw!r}", 2)
        if not value > 0:
            fail(f"setting caproni.{key} must be positive, not {raw!r}", 2)
        values[key] = value
    return PackageLimits(
        max_total_size=int(values["max_package_size"]),
        max_ratio=values["max_compression_ratio"],
    )
