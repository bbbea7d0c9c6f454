"""Counting the inotify watches this process holds (Linux /proc), for watch tests and
bench/bench_watches.py."""

from __future__ import annotations

import os


def kernel_watches() -> int:
    """inotify watches this process holds, from /proc/self/fdinfo of its inotify fds."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                count += sum(1 for line in info if line.startswith("inotify wd"))
        except OSError:
            continue
    return count
