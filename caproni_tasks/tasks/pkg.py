"""Publishing tasks (``invoke pkg.*``): build packages, register them, move refs, tag.

The repository is ``--repo`` (a URL or a path, relative to the working directory),
else the ``caproni.service_url`` setting (a path there is relative to the project),
else the ``CIPD_SERVICE_URL`` environment variable. Local directory repositories and
CIPD services (docs/repository.md) are writable; a static HTTP repository is published
by serving or uploading such a directory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.tasks import task

from caproni_tasks.tasks._common import fail, listed, network_options, project_dir, setting

if TYPE_CHECKING:
    from invoke.context import Context

    from caproni_tasks.packages.repository import (
        InstanceInfo,
        PackageDescription,
        Repository,
    )

_REPO_HELP = (
    "Repository URL or directory (default: the caproni.service_url setting). "
    "file:// URLs, paths and CIPD services are writable; static http(s):// is read-only."
)


@contextmanager
def _polite_errors() -> Iterator[None]:
    """Turn every expected failure into a one-line message and exit code 1."""
    from caproni_tasks.ensure import ValidationError
    from caproni_tasks.packages.format import PackageFormatError
    from caproni_tasks.packages.locking import LockTimeoutError
    from caproni_tasks.packages.repository import PackageNotFoundError, RepositoryError

    try:
        yield
    except PackageNotFoundError as error:  # an unknown name is a usage error
        fail(f"error: {error}", 2)
    except (RepositoryError, PackageFormatError, ValidationError, LockTimeoutError) as error:
        fail(f"error: {error}")
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        fail(f"error:{where}: {error.strerror or error}")


def _open(c: Context, repo: str) -> Repository:
    from caproni_tasks.packages.backends import open_repository

    if repo:
        return open_repository(repo, base_dir=Path.cwd(), network=network_options(c))
    configured = setting(c, "service_url")
    if not configured:
        import os

        environment = os.environ.get("CIPD_SERVICE_URL", "").strip()
        if environment:
            return open_repository(environment, base_dir=Path.cwd(), network=network_options(c))
        fail(
            "error: no repository: pass --repo URL-or-directory, or set caproni.service_url "
            "in invoke.yaml",
            2,
        )
    return open_repository(str(configured), base_dir=project_dir(c), network=network_options(c))


def _open_writable(c: Context, repo: str) -> Repository:
    from caproni_tasks.packages.repository import ReadOnlyRepositoryError

    opened = _open(c, repo)
    if not opened.writable:
        raise ReadOnlyRepositoryError(
            f"repository {opened.url} is read-only: publish into a local directory "
            "repository (--repo DIR) and serve it (pkg.serve) or upload that directory"
        )
    return opened


def _validate_refs_and_tags(refs: Sequence[str], tags: Sequence[str]) -> None:
    from caproni_tasks.ensure import validate_ref, validate_tag

    for ref in refs:
        validate_ref(ref)
    for tag in tags:
        validate_tag(tag)


def _split_version(package: str, version: str) -> tuple[str, str]:
    """Accept ``PKG@VERSION`` as well as ``PKG --version VERSION``."""
    name, at, inline = package.partition("@")
    if at and version and inline != version:
        fail(
            f"error: two versions given: {inline!r} (in {package!r}) and --version {version!r}",
            2,
        )
    return name, version or inline


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _publish(
    repository: Repository,
    package_file: Path,
    refs: Sequence[str],
    tags: Sequence[str],
) -> tuple[str, str]:
    from caproni_tasks.packages.format import PackageReader

    with PackageReader(package_file) as reader:
        package = reader.manifest.package_name
    instance_id = repository.register_instance(package_file)
    _err(f"registered {package}:{instance_id} in {repository.url}")
    for ref in refs:
        repository.set_ref(package, ref, instance_id)
        _err(f"  ref {ref} -> {instance_id}")
    if tags:
        repository.attach_tags(package, instance_id, tags)
        for tag in tags:
            _err(f"  tag {tag}")
    return package, instance_id


@task(
    auto_shortflags=False,
    iterable=["ref", "tag"],
    help={
        "in": "Directory to package (its files, executable bits and symlinks).",
        "name": "Package name, e.g. tools/hello or tools/hello/linux-amd64.",
        "ref": "Point this ref (e.g. latest) at the new instance; repeatable.",
        "tag": "Attach this key:value tag (e.g. version:1.2); repeatable.",
        "repo": _REPO_HELP,
        "install_mode": "Install mode recorded in the manifest: copy or symlink.",
        "version_file": "Relative path where installers write a JSON version file.",
        "preserve_writable": "Keep the owner-write bit (files are read-only otherwise).",
        "out": "Also keep the built package file at this path.",
    },
)
def create(
    c: Context,
    in_: str = "",
    name: str = "",
    ref: list[str] | None = None,
    tag: list[str] | None = None,
    repo: str = "",
    install_mode: str = "",
    version_file: str = "",
    preserve_writable: bool = False,
    out: str = "",
) -> None:
    """Build a package from a directory and register it; prints the instance ID."""
    import tempfile

    from caproni_tasks.ensure import validate_package_name
    from caproni_tasks.packages.format import build_package

    if not in_ or not name:
        fail("error: pkg.create needs --in DIR and --name PACKAGE", 2)
    refs, tags = listed(ref), listed(tag)
    with _polite_errors():
        validate_package_name(name)
        _validate_refs_and_tags(refs, tags)
        repository = _open_writable(c, repo)
        with tempfile.TemporaryDirectory(prefix="caproni-pkg-") as tmp:
            package_file = Path(out).absolute() if out else Path(tmp) / "package.cipd"
            build_package(
                Path(in_).expanduser(),
                name,
                package_file,
                install_mode=install_mode or None,
                version_file=version_file or None,
                preserve_writable=preserve_writable,
            )
            _, instance_id = _publish(repository, package_file, refs, tags)
    print(instance_id)


@task(
    auto_shortflags=False,
    help={
        "in": "Directory to package.",
        "name": "Package name.",
        "out": "Where to write the package file.",
        "install_mode": "Install mode recorded in the manifest: copy or symlink.",
        "version_file": "Relative path where installers write a JSON version file.",
        "preserve_writable": "Keep the owner-write bit (files are read-only otherwise).",
    },
)
def build(
    c: Context,
    in_: str = "",
    name: str = "",
    out: str = "",
    install_mode: str = "",
    version_file: str = "",
    preserve_writable: bool = False,
) -> None:
    """Build a package file without registering it; prints the instance ID."""
    from caproni_tasks.packages.format import build_package

    if not in_ or not name or not out:
        fail("error: pkg.build needs --in DIR, --name PACKAGE and --out FILE", 2)
    with _polite_errors():
        instance_id = build_package(
            Path(in_).expanduser(),
            name,
            Path(out).expanduser(),
            install_mode=install_mode or None,
            version_file=version_file or None,
            preserve_writable=preserve_writable,
        )
    print(instance_id)


@task(
    auto_shortflags=False,
    iterable=["ref", "tag"],
    help={
        "file": "A package file built by pkg.build.",
        "ref": "Point this ref at the instance; repeatable.",
        "tag": "Attach this key:value tag; repeatable.",
        "repo": _REPO_HELP,
    },
)
def register(
    c: Context,
    file: str,
    ref: list[str] | None = None,
    tag: list[str] | None = None,
    repo: str = "",
) -> None:
    """Register a package file (validated first); prints the instance ID."""
    refs, tags = listed(ref), listed(tag)
    with _polite_errors():
        _validate_refs_and_tags(refs, tags)
        repository = _open_writable(c, repo)
        _, instance_id = _publish(repository, Path(file).expanduser(), refs, tags)
    print(instance_id)


def _retarget(
    c: Context,
    package: str,
    version: str,
    repo: str,
    what: str,
    items: Sequence[str],
    apply: Callable[[Repository, str, str], None],
) -> None:
    package, version = _split_version(package, version)
    if not version:
        fail(
            f"error: pass --version (an instance ID, ref or tag) to choose the instance to {what}",
            2,
        )
    if not items:
        fail(f"error: nothing to do: pass at least one --{what.split()[-1]}", 2)
    with _polite_errors():
        repository = _open_writable(c, repo)
        instance_id = repository.resolve_version(package, version)
        apply(repository, package, instance_id)


@task(
    auto_shortflags=False,
    iterable=["ref"],
    help={
        "name": "Package name (PKG or PKG@VERSION); also the first positional argument.",
        "version": "Instance ID, ref or tag of the instance the refs should name.",
        "ref": "Ref to set (created or moved); repeatable.",
        "repo": _REPO_HELP,
    },
)
def set_ref(
    c: Context, name: str, version: str = "", ref: list[str] | None = None, repo: str = ""
) -> None:
    """Point refs at the instance that --version names."""
    refs = listed(ref)
    with _polite_errors():
        _validate_refs_and_tags(refs, [])

    def apply(repository: Repository, name: str, instance_id: str) -> None:
        for one in refs:
            repository.set_ref(name, one, instance_id)
            print(f"{name}: ref {one} -> {instance_id}")

    _retarget(c, name, version, repo, "set the ref", refs, apply)


@task(
    auto_shortflags=False,
    iterable=["tag"],
    help={
        "name": "Package name (PKG or PKG@VERSION); also the first positional argument.",
        "version": "Instance ID, ref or tag of the instance to tag.",
        "tag": "key:value tag to attach; repeatable.",
        "repo": _REPO_HELP,
    },
)
def set_tag(
    c: Context, name: str, version: str = "", tag: list[str] | None = None, repo: str = ""
) -> None:
    """Attach tags to the instance that --version names."""
    tags = listed(tag)
    with _polite_errors():
        _validate_refs_and_tags([], tags)

    def apply(repository: Repository, name: str, instance_id: str) -> None:
        repository.attach_tags(name, instance_id, tags)
        for one in tags:
            print(f"{name}: tag {one} -> {instance_id}")

    _retarget(c, name, version, repo, "set the tag", tags, apply)


@task(
    auto_shortflags=False,
    help={
        "name": "Package name (PKG or PKG@VERSION); also the first positional argument.",
        "version": "Show only the instance this instance ID, ref or tag names.",
        "repo": _REPO_HELP,
        "json": "Print JSON instead of text.",
    },
)
def describe(c: Context, name: str, version: str = "", repo: str = "", json_: bool = False) -> None:
    """Show a package's instances (oldest first) with their refs and tags."""
    package, version = _split_version(name, version)
    with _polite_errors():
        repository = _open(c, repo)
        description = repository.describe(package)
        chosen = repository.resolve_version(package, version) if version else None
    instances = [
        info for info in description.instances if chosen is None or info.instance_id == chosen
    ]
    if json_:
        import json

        print(
            json.dumps(
                _describe_json(repository, description, instances, version, chosen), indent=2
            )
        )
        return
    print(f"Package:    {description.package}")
    print(f"Repository: {repository.url}")
    if chosen is not None:
        print(f"Version:    {version} -> {chosen}")
    print("Instances:" if chosen is not None else "Instances (oldest first):")
    for info in instances:
        print(_instance_line(info))
    if not instances:
        print("  (none)")
    if chosen is None:
        if description.refs:
            print("Refs:")
            width = max(len(r) for r in description.refs)
            for ref_name, instance_id in description.refs.items():
                print(f"  {ref_name.ljust(width)}  {instance_id}")
        if description.tags:
            print("Tags:")
            width = max(len(t) for t in description.tags)
            for tag_name, owners in description.tags.items():
                marker = "  (ambiguous)" if len(owners) > 1 else ""
                print(f"  {tag_name.ljust(width)}  {', '.join(owners)}{marker}")


@task(name="list", auto_shortflags=False, help={"repo": _REPO_HELP})
def list_(c: Context, repo: str = "") -> None:
    """List the packages of a local directory repository or a CIPD service."""
    with _polite_errors():
        for name in _open(c, repo).packages():
            print(name)


@task(
    auto_shortflags=False,
    iterable=["tag"],
    help={
        "tag": "key:value tag the instances must carry; repeatable (all must match).",
        "name": "Search this package only (default: every package of the repository).",
        "repo": _REPO_HELP,
        "json": "Print JSON instead of text.",
    },
)
def search(
    c: Context, tag: list[str] | None = None, name: str = "", repo: str = "", json_: bool = False
) -> None:
    """Find the instances that carry every --tag, as PACKAGE:INSTANCE_ID lines (newest
    first within a package; SearchInstances on a CIPD service)."""
    from caproni_tasks.ensure import validate_package_name

    tags = listed(tag)
    if not tags:
        fail("error: pass at least one --tag key:value")
    found: list[tuple[str, str]] = []
    with _polite_errors():
        _validate_refs_and_tags([], tags)
        repository = _open(c, repo)
        if name:
            validate_package_name(name)
        for package in [name] if name else repository.packages():
            ids = repository.search_instances(package, tags)
            found += [(package, instance_id) for instance_id in ids]
    if json_:
        import json

        rows = [{"package": p, "instance_id": i} for p, i in found]
        print(json.dumps(rows, indent=2))
        return
    for package, instance_id in found:
        print(f"{package}:{instance_id}")
    if not found:
        _err(f"no instance carries {', '.join(tags)}")


def _instance_line(info: InstanceInfo) -> str:
    extras = []
    if info.refs:
        extras.append("refs: " + ", ".join(info.refs))
    if info.tags:
        extras.append("tags: " + ", ".join(info.tags))
    tail = ("  " + "  ".join(extras)) if extras else ""
    from caproni_tasks.packages.limits import human_size

    size = human_size(info.size) if info.size >= 0 else "?"  # a CIPD service never says
    return f"  {info.instance_id}  {info.registered_at}  {size:>9}{tail}"


def _describe_json(
    repository: Repository,
    description: PackageDescription,
    instances: Sequence[InstanceInfo],
    version: str,
    chosen: str | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "package": description.package,
        "repository": repository.url,
        "instances": [
            {
                "instance_id": info.instance_id,
                "registered_at": info.registered_at,
                "size": info.size,
                "refs": list(info.refs),
                "tags": list(info.tags),
            }
            for info in instances
        ],
        "refs": dict(description.refs),
        "tags": {tag_name: list(owners) for tag_name, owners in description.tags.items()},
    }
    if chosen is not None:
        data["version"] = version
        data["instance_id"] = chosen
    return data
