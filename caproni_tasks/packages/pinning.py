"""From an ensure file to instance IDs: the repository, the versions file, every platform.

The glue between the ensure-file language (`caproni_tasks.ensure`) and the installer,
shared by ``invoke ensure``, ``ensure.resolve``, ``ensure.verify`` and ``invoke lint``:

- which repository a file means (``$ServiceURL``, else the caller's fallbacks);
- which resolver answers version questions: with ``$ResolvedVersions`` the versions
  file and nothing else (no repository request at all), otherwise the repository;
- resolving for the host or for every ``$VerifiedPlatform``, and comparing a fresh
  resolution with the versions file on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from caproni_tasks.packages.installer import Desired
from caproni_tasks.userfiles import read_regular_text

if TYPE_CHECKING:
    from caproni_tasks.ensure import EnsureFile, Pin, VersionsFile
    from caproni_tasks.packages.repository import NetworkOptions, Repository

__all__ = [
    "EnsureSource",
    "PinningError",
    "RepositoryChoice",
    "RepositoryResolver",
    "StaleEntry",
    "desired_from",
    "read_versions_file",
    "resolve_all_platforms",
    "stale_entries",
]


class PinningError(Exception):
    """A problem with the ensure file, the versions file or resolving; never a traceback."""

    def __init__(
        self,
        message: str,
        error_code: str = "bad_argument_error",
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        #: ``{"package", "version", "subdir"}`` of the line that failed, when one did.
        self.details: dict[str, str] = dict(details or {})


@dataclass
class EnsureSource:
    """A parsed ensure file and where relative names in it point."""

    path: Path
    text: str
    file: EnsureFile

    @classmethod
    def load(cls, path: Path) -> EnsureSource:
        from caproni_tasks.ensure import EnsureFileError, EnsureParseError, parse

        try:
            text = read_regular_text(path)
        except FileNotFoundError:
            raise PinningError(
                f"ensure file {path} does not exist (set --ensure-file or caproni.ensure_file)"
            ) from None
        except OSError as exc:
            raise PinningError(
                f"cannot read ensure file {path}: {exc.strerror or exc}", "io_error"
            ) from None
        except UnicodeDecodeError as exc:
            raise PinningError(f"cannot read ensure file {path}: {exc}", "io_error") from None
        try:
            parsed = parse(text, filename=str(path))
        except EnsureParseError as exc:
            raise PinningError(f"{path}:{exc.line}: {exc.message}") from None
        except EnsureFileError as exc:
            raise PinningError(f"{path}: {exc}") from None
        return cls(path, text, parsed)

    @property
    def directory(self) -> Path:
        return self.path.absolute().parent

    @property
    def versions_path(self) -> Path | None:
        """The ``$ResolvedVersions`` file (relative to the ensure file's directory)."""
        name = self.file.resolved_versions
        if not name:
            return None
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.directory / path

    def service_url(
        self, cli: str | None, config: str | None, config_base: Path | None = None
    ) -> RepositoryChoice:
        """Which repository the file means, in the cipd client's order: ``$ServiceURL``,
        else ``cli`` (``--service-url``), else ``config`` (``caproni.service_url``), else
        the ``CIPD_SERVICE_URL`` environment variable, else the cipd client's default
        service (``https://chrome-infra-packages.appspot.com``, spoken to with the CIPD
        protocol).

        A plain path is relative to where it was written: ``--service-url`` to the
        working directory, like every command-line path; ``caproni.service_url`` to
        ``config_base`` (the project directory, like every path setting; the ensure
        file's directory if not given). ``$ServiceURL`` always has a scheme.
        """
        if self.file.service_url:
            return RepositoryChoice(
                self.file.service_url, self.directory, f"$ServiceURL in {self.path}"
            )
        if cli:
            return RepositoryChoice(cli, Path.cwd(), "--service-url")
        if config:
            base = config_base if config_base is not None else self.directory
            return RepositoryChoice(str(config), base, "caproni.service_url")
        import os

        from caproni_tasks.packages.cipd_protocol import DEFAULT_SERVICE_URL

        environment = os.environ.get("CIPD_SERVICE_URL", "").strip()
        if environment:
            return RepositoryChoice(environment, Path.cwd(), "CIPD_SERVICE_URL")
        return RepositoryChoice(
            DEFAULT_SERVICE_URL,
            Path.cwd(),
            f"the default service {DEFAULT_SERVICE_URL} (nothing names one for {self.path}: add "
            "'$ServiceURL <url>' to it, pass --service-url, or set caproni.service_url)",
        )

    def platforms(self) -> list[tuple[str, str]]:
        """The distinct ``$VerifiedPlatform``s in declaration order, else the host's."""
        from caproni_tasks.ensure import verified_platforms

        return verified_platforms(self.file)


@dataclass(frozen=True)
class RepositoryChoice:
    """A repository URL (or plain path), the directory a relative path is taken from,
    and where the user wrote it (for error messages)."""

    url: str
    base_dir: Path
    origin: str

    def open(self, network: NetworkOptions | None = None) -> Repository:
        """Open it; a bad URL or a local directory that does not exist is one error
        naming where the URL came from (rather than one error per package line)."""
        from caproni_tasks.packages.backends import open_repository
        from caproni_tasks.packages.backends.directory import LocalRepository
        from caproni_tasks.packages.repository import RepositoryError

        try:
            repository = open_repository(self.url, base_dir=self.base_dir, network=network)
        except RepositoryError as exc:
            raise PinningError(f"{self.origin}: {exc}", exc.error_code) from None
        if isinstance(repository, LocalRepository) and not repository.root.is_dir():
            raise PinningError(
                f"{self.origin}: repository directory {repository.root} does not exist "
                "(publish into it with 'invoke pkg.create --repo DIR', or fix the URL)",
                "backend_unavailable_error",
            )
        return repository


class RepositoryResolver:
    """``(package, version) -> Pin`` through a repository, each pair asked once.

    Remembers the error code of the first repository failure so a failed resolve is
    reported with the code the repository gave (backend unavailable vs bad version).
    """

    def __init__(self, repository: Callable[[], Repository]) -> None:
        # Opened now, so a missing or bad repository URL is one error, not one per line.
        self._repo = repository()
        self._lock = threading.Lock()
        self.error_code: str | None = None
        #: Packages the repository said it does not have (for close-name hints).
        self.missing_packages: set[str] = set()

    @property
    def repository(self) -> Repository:
        return self._repo

    def __call__(self, package: str, version: str) -> Pin:
        from caproni_tasks.ensure import Pin
        from caproni_tasks.packages.repository import PackageNotFoundError, RepositoryError

        try:
            return Pin(package, self._repo.resolve_version(package, version))
        except RepositoryError as exc:
            with self._lock:
                self.error_code = self.error_code or exc.error_code
                if isinstance(exc, PackageNotFoundError):
                    self.missing_packages.add(package)
            raise


def read_versions_file(path: Path) -> VersionsFile:
    from caproni_tasks.ensure import EnsureFileError, parse_versions_file

    try:
        text = read_regular_text(path)
    except FileNotFoundError:
        raise PinningError(
            f"versions file {path} does not exist: run 'invoke ensure.resolve' to create it",
            "bad_argument_error",
        ) from None
    except OSError as exc:
        raise PinningError(
            f"cannot read versions file {path}: {exc.strerror or exc}", "io_error"
        ) from None
    except UnicodeDecodeError as exc:
        raise PinningError(f"cannot read versions file {path}: {exc}", "io_error") from None
    try:
        return parse_versions_file(text)
    except EnsureFileError as exc:
        raise PinningError(f"{path}: {exc}") from None


def desired_from(source: EnsureSource, repository: Callable[[], Repository]) -> list[Desired]:
    """Resolve for the host: the packages the root should hold.

    With ``$ResolvedVersions`` every version comes from that file; the repository is
    never asked about versions.
    """
    from caproni_tasks.ensure import EnsureFileError

    versions_path = source.versions_path
    resolver: Callable[[str, str], Pin]
    repo_resolver: RepositoryResolver | None = None
    if versions_path is not None:
        resolver = read_versions_file(versions_path).resolve
    else:
        repo_resolver = RepositoryResolver(repository)
        resolver = repo_resolver
    try:
        resolved = source.file.resolve(resolver)
    except EnsureFileError as exc:
        code = (repo_resolver.error_code if repo_resolver else None) or "invalid_version_error"
        message = f"{source.path}: {exc}"
        if versions_path is not None and "not in the versions file" in message:
            message += (
                f"\n{versions_path} does not pin every package of {source.path.name}: "
                "run 'invoke ensure.resolve' to update it"
            )
        if repo_resolver is not None:
            from caproni_tasks.packages.resolve_problems import missing_package_hints

            hints = missing_package_hints(repo_resolver.missing_packages, repo_resolver.repository)
            message = "\n".join([message, *hints])
        raise PinningError(message, code, error_details(source, exc)) from None
    desired = [
        Desired(subdir, pin.package, pin.instance_id)
        for subdir, pins in sorted(resolved.packages_by_subdir.items())
        for pin in pins
    ]
    return desired


def error_details(source: EnsureSource, error: BaseException) -> dict[str, str]:
    """``{"package", "version", "subdir"}`` of the first line a resolve error names (for
    ``--json``; the cipd client's ``error_details``), expanded for the host; ``{}`` when
    the error names no package line."""
    from caproni_tasks.ensure import (
        MultiError,
        ResolveError,
        TemplateError,
        expand_template,
        host_template_args,
    )

    first: BaseException = error
    while isinstance(first, MultiError) and first.errors:
        first = first.errors[0]
    line = first.line if isinstance(first, ResolveError) else 0
    if not line:
        return {}
    args = host_template_args()
    for raw_subdir, definition in source.file.all_packages():
        if definition.line != line:
            continue
        details = {"version": definition.version}
        try:
            details["package"] = expand_template(definition.template, args)
            details["subdir"] = expand_template(raw_subdir, args)
        except TemplateError:
            details.setdefault("package", definition.template)
            details.setdefault("subdir", raw_subdir)
        return {key: value for key, value in details.items() if value}
    return {}


@dataclass
class PlatformResolution:
    """What resolving every platform produced: entries for a versions file, or an error;
    and every (package, instance ID) pinned on some platform."""

    entries: dict[tuple[str, str], str] = field(default_factory=dict)
    error: str | None = None
    pinned: set[tuple[str, str]] = field(default_factory=set)


def resolve_all_platforms(
    source: EnsureSource, resolve: Callable[[str, str], Pin]
) -> PlatformResolution:
    """Resolve for every platform, recording each (package, version) -> instance ID asked.

    Instance-ID versions need no entry. Errors are worded as the original client's
    (``when resolving <os>-<arch>: …``).
    """
    from caproni_tasks.ensure import EnsureFileError, resolve_for_platforms

    result = PlatformResolution()
    lock = threading.Lock()

    def recording(package: str, version: str) -> Pin:
        pin = resolve(package, version)
        with lock:
            result.entries[(package, version)] = pin.instance_id
        return pin

    try:
        resolved = resolve_for_platforms(source.file, recording)
    except EnsureFileError as exc:
        from caproni_tasks.packages.resolve_problems import (
            grouped_message,
            missing_package_hints,
        )

        # One line per problem, not one per platform; close names for missing packages.
        hints: list[str] = []
        if isinstance(resolve, RepositoryResolver):
            hints = missing_package_hints(resolve.missing_packages, resolve.repository)
        result.error = "\n".join([f"{source.path}: {grouped_message(exc)}", *hints])
        return result
    for one in resolved.values():
        for pins in one.packages_by_subdir.values():
            result.pinned.update((pin.package, pin.instance_id) for pin in pins)
    return result


def missing_instances(
    source: EnsureSource, found: PlatformResolution, repository: Repository, jobs: int = 8
) -> list[str]:
    """Problems with the instances the file pins by ID (resolving never asks about
    those): each is checked to exist in ``repository`` (for the CIPD service, one
    DescribeInstance each), in parallel. Pins found through the repository are not
    asked again."""
    from concurrent.futures import ThreadPoolExecutor

    from caproni_tasks.packages.repository import RepositoryError

    asked = {(package, iid) for (package, _), iid in found.entries.items()}
    wanted = sorted(found.pinned - asked)
    if not wanted:
        return []

    def check(pin: tuple[str, str]) -> str | None:
        try:
            repository.resolve_version(*pin)
        except RepositoryError as exc:
            return f"{source.path}: pinned instance {pin[0]}@{pin[1]}: {exc}"
        return None

    with ThreadPoolExecutor(min(jobs, len(wanted))) as pool:
        return [problem for problem in pool.map(check, wanted) if problem is not None]


@dataclass(frozen=True)
class StaleEntry:
    package: str
    version: str
    recorded: str | None  # in the versions file
    current: str | None  # from the repository

    def __str__(self) -> str:
        if self.recorded is None:
            return f"{self.package} {self.version}: missing (resolves to {self.current})"
        if self.current is None:
            return f"{self.package} {self.version}: not used by the ensure file any more"
        return f"{self.package} {self.version}: {self.recorded} is stale, now {self.current}"


def stale_entries(
    recorded: dict[tuple[str, str], str], current: dict[tuple[str, str], str]
) -> list[StaleEntry]:
    out = []
    for key in sorted(set(recorded) | set(current)):
        a, b = recorded.get(key), current.get(key)
        if a != b:
            out.append(StaleEntry(key[0], key[1], a, b))
    return out


def entries_of(versions: VersionsFile) -> dict[tuple[str, str], str]:
    """(package, version) -> instance ID of a parsed versions file."""
    return dict(versions.entries)
