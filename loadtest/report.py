"""Writing benchmark results into docs/performance.md, each benchmark owning one marked block."""

from __future__ import annotations

import datetime
import os
import platform
import resource
from pathlib import Path

__all__ = ["DOCS", "cpu_seconds", "cpu_times", "machine", "machine_busy", "own_cpu", "write_block"]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def machine() -> str:
    """When and on what the numbers were taken."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown CPU")
    cores = len(os.sched_getaffinity(0))  # what `nproc` prints
    return f"Measured {datetime.date.today()} on {cores} cores ({cpu}), Python {platform.python_version()}."


def write_block(name: str, body: str) -> None:
    """Replace (or append) the block between `<!-- {name}:start -->` and `<!-- {name}:end -->`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOCS.write_text(text)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    return sum(cpu_times(pid))


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu(servers: list[int]) -> float:
    """CPU seconds used so far by the `servers`, this process and its children it has waited for (e.g. wrk runs)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(map(cpu_seconds, servers)) + mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime
