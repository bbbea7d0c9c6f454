"""The demo client: polls the service and prints what it answers when it changes."""

import sys
import time
import urllib.request


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765/"
    last = None
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode().strip()
        except OSError as exc:
            text = f"(service unavailable: {getattr(exc, 'reason', exc)})"
        if text != last:
            print(f"the service says: {text}")
            last = text
        time.sleep(1)


if __name__ == "__main__":
    main()
