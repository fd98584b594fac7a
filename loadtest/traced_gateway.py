"""The gateway under tracemalloc, for loadtest/scale.py: heap snapshots on request.

    python -m loadtest.traced_gateway SNAPSHOT_DIR serve -c config.yaml [...]

Runs `aggregator` with the arguments after SNAPSHOT_DIR. An empty file SNAPSHOT_DIR/NAME.request
asks for something, and SNAPSHOT_DIR/NAME.done says it was done: `start` starts tracing
allocations (`TRACE_FRAMES` frames, default 12; only what is allocated from then on is traced, so a snapshot is small
and quick), any other NAME collects garbage and dumps a snapshot to SNAPSHOT_DIR/NAME.snapshot.
A thread watches the folder, so this happens while the event loop runs.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = int(os.environ.get("TRACE_FRAMES", "12"))
"""Frames kept per allocation; each costs (25 make a session 50 times slower to open than untraced)."""


def watch(folder: Path) -> None:
    while True:
        for request in folder.glob("*.request"):
            if request.stem == "start":
                tracemalloc.start(FRAMES)
            else:
                gc.collect()
                snapshot = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
                )
                snapshot.dump(str(folder / f"{request.stem}.snapshot"))
            request.unlink()
            (folder / f"{request.stem}.done").touch()
        time.sleep(0.05)


def main() -> int:
    folder = Path(sys.argv[1])
    threading.Thread(target=watch, args=(folder,), daemon=True, name="snapshots").start()
    from aggregator.cli import main as aggregator

    return aggregator(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
