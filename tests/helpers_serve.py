"""Start the real ``pkg.serve`` server for a test.

    from helpers_serve import CipdServer

    with CipdServer(repo_dir, write_token="t") as server:
        httpx.post(f"{server.url}/prpc/cipd.Repository/ResolveVersion", ...)

The server runs uvicorn in a daemon thread on 127.0.0.1 with a free port; entering the
block returns once it accepts connections, leaving it stops the server and waits for
the thread (`BackgroundServer` does both). ``secret`` fixes the signing key (to forge
or age signed URLs in tests); ``finish_wait`` bounds how long FinishUpload waits for
verification.
"""

from __future__ import annotations

from pathlib import Path

from caproni_tasks.packages.serve.app import ServeConfig
from caproni_tasks.packages.serve.runner import BackgroundServer

__all__ = ["CipdServer"]


class CipdServer(BackgroundServer):
    def __init__(
        self,
        repo_dir: Path,
        *,
        write_token: str | None = None,
        secret: bytes | None = None,
        url_lifetime: float = 7200.0,
        finish_wait: float = 10.0,
    ) -> None:
        repo_dir = Path(repo_dir)
        repo_dir.mkdir(parents=True, exist_ok=True)
        self.repo_dir = repo_dir
        self.write_token = write_token
        super().__init__(
            ServeConfig(
                repository=repo_dir,
                write_token=write_token,
                secret=secret,
                url_lifetime=url_lifetime,
                finish_wait=finish_wait,
            )
        )

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])
