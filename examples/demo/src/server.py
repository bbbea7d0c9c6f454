"""The demo service: answers GET / with the greeting from the GREETING environment
variable (fed from config/greeting.txt through a runtime variable) and GET /health."""

import argparse
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common.text import decorate  # src/ is on sys.path: the script's directory

GREETING = decorate(os.environ.get("GREETING", "hello"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n" if self.path == "/health" else (GREETING + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per poll would drown the demo's output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    try:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    except OSError as exc:
        # Most likely the port is taken: say which and what to do, not a traceback.
        sys.exit(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}; stop the "
            f"program using port {args.port} or replace every {args.port} in caproni.yaml"
        )
    # Stop promptly on the supervisor's SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {GREETING!r} on http://127.0.0.1:{args.port}/")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
