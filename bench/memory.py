"""Memory per process of a running stack: PSS (proportional set size) from ``/proc/<pid>/smaps_rollup``.

PSS shares each page among the processes that map it, so the figures add up to what the stack
really takes (RSS would count every shared library and copy-on-write page once per process).
Each service is measured with its whole process group (its workers, task processes, children),
split by role: the scheduler's LocalExecutor workers, the model server's worker processes.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def role(service: str, pid: int, leader: int) -> str:
    """The row a process is counted in: the service itself, or a kind of its children."""
    if pid == leader:
        return service
    cmd = _cmdline(pid)
    if "LocalExecutor" in cmd or "executor" in cmd.lower() and "airflow" in cmd:
        return f"{service}: executor workers"
    if "task-runner" in cmd or "supervisor" in cmd.lower() or "airflow task" in cmd:
        return f"{service}: task processes"
    if service == "model-server":
        return "model-server: workers"
    return f"{service}: children"


def stack_memory(procs: dict[str, int]) -> dict[str, dict[str, float]]:
    """{row: {"pss_mb": total, "processes": n}} for every process in the services' process groups.

    ``procs`` maps a service name to its process (group leader) id, as ``Stack.procs`` holds them.
    """
    groups = {_pgid(pid): (name, pid) for name, pid in procs.items()}
    rows: dict[str, dict[str, float]] = defaultdict(lambda: {"pss_mb": 0.0, "processes": 0})
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        owner = groups.get(_pgid(pid))
        if owner is None:
            continue
        name, leader = owner
        row = rows[role(name, pid, leader)]
        row["pss_mb"] += pss_kb(pid) / 1024
        row["processes"] += 1
    return {k: {"pss_mb": round(v["pss_mb"], 1), "processes": int(v["processes"])} for k, v in sorted(rows.items())}


def total_mb(rows: dict[str, dict[str, float]]) -> float:
    return round(sum(r["pss_mb"] for r in rows.values()), 1)
