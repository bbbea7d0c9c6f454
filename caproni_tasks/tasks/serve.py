"""``invoke pkg.serve``: serve a directory repository over HTTP (static layout + CIPD).

Needs the optional extra ``caproni-tasks[serve]`` (starlette, uvicorn), imported only
when the task runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.tasks import task

from caproni_tasks.tasks._common import checked_path, fail, int_option, project_dir, setting

if TYPE_CHECKING:
    from invoke.context import Context

#: Read when neither --write-token nor --write-token-env is given.
WRITE_TOKEN_ENV = "CAPRONI_SERVE_WRITE_TOKEN"


def _repository_dir(c: Context, repo: str) -> Path:
    """``--repo`` (relative to the working directory), else a local
    ``caproni.service_url`` (relative to the project)."""
    if repo:
        value, base, option = repo, Path.cwd(), "--repo"
    else:
        configured = setting(c, "service_url")
        if not configured:
            fail("error: pass --repo DIR (the directory repository to serve)", 2)
        value, base, option = str(configured), project_dir(c), "caproni.service_url"
    if value.lower().startswith("file://"):
        from caproni_tasks.packages.backends.directory import LocalRepository
        from caproni_tasks.packages.repository import RepositoryError

        try:
            return LocalRepository.from_url(value).root
        except RepositoryError as error:
            fail(f"error: {option}: {error}", 2)
    if "://" in value:
        fail(f"error: {option} {value}: pkg.serve serves a local directory, not a URL", 2)
    path = checked_path(value, option)
    return (path if path.is_absolute() else base / path).absolute()


def _write_token(write_token: str, write_token_env: str) -> str | None:
    if write_token and write_token_env:
        fail("error: pass --write-token or --write-token-env, not both", 2)
    if write_token:
        return write_token
    if write_token_env:
        value = os.environ.get(write_token_env, "")
        if not value.strip():
            fail(f"error: --write-token-env {write_token_env}: that variable is not set", 2)
        return value.strip()
    return os.environ.get(WRITE_TOKEN_ENV, "").strip() or None


@task(
    auto_shortflags=False,
    help={
        "repo": "Directory repository to serve (default: caproni.service_url if a path).",
        "host": "Address to listen on (default 127.0.0.1; 0.0.0.0 exposes it).",
        "port": "Port to listen on (default 8000; 0 picks a free one).",
        "write_token": "Bearer token that allows publishing (prefer --write-token-env).",
        "write_token_env": f"Environment variable holding the write token (default: "
        f"{WRITE_TOKEN_ENV} if set). Without a token the server is read-only.",
    },
)
def serve(
    c: Context,
    repo: str = "",
    host: str = "127.0.0.1",
    port: str = "8000",
    write_token: str = "",
    write_token_env: str = "",
) -> None:
    """Serve a directory repository over HTTP: static layout and the CIPD protocol."""
    from caproni_tasks.packages.serve import ServeExtraMissingError, require_serve_extra

    number = int_option(port, "--port", minimum=0, maximum=65535, default=8000)
    if not host.strip():
        fail("error: --host: empty address", 2)
    root = _repository_dir(c, repo)
    token = _write_token(write_token, write_token_env)
    try:
        require_serve_extra()
    except ServeExtraMissingError as error:
        fail(f"error: {error}")
    if root.exists() and not root.is_dir():
        fail(f"error: repository {root} is not a directory")
    if not root.exists():
        if token is None:
            fail(
                f"error: repository {root} does not exist: publish into it first, or start "
                "with a write token to publish through the server"
            )
        try:
            root.mkdir(parents=True)
        except OSError as error:
            fail(f"error: cannot create {root}: {error.strerror or error}")

    from caproni_tasks.packages.serve.app import ServeConfig
    from caproni_tasks.packages.serve.runner import bind, serve_forever

    try:
        sock = bind(host.strip(), number)
    except OSError as error:
        fail(f"error: cannot listen on {host}:{number}: {error.strerror or error}")

    def announce(url: str) -> None:
        access = "writes need the bearer token" if token else "read-only"
        print(f"serving {root} ({access}); Ctrl-C stops", file=sys.stderr, flush=True)
        print(f"$ServiceURL {url}", flush=True)

    try:
        serve_forever(ServeConfig(repository=root, write_token=token), sock, announce)
    except OSError as error:
        fail(f"error: {error.strerror or error}")
    print("stopped", file=sys.stderr, flush=True)
