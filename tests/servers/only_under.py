"""Run a command only when started by a given parent program; otherwise fail as a broken backend would.

    python -m tests.servers.only_under aggregator-worker -- COMMAND [ARGS...]

Lets a test give the worker a working stdio backend and the replicas a broken copy of it: the
same config line, started by two different programs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    marker, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit("usage: python -m tests.servers.only_under PARENT -- COMMAND [ARGS...]")
    parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if marker not in parent:
        print(f"refusing to start under {parent.strip()!r} (only under {marker!r})", file=sys.stderr)
        raise SystemExit(3)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
