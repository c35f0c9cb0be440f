"""What every benchmark reports beside its figures: the machine, the commit, and a process's
CPU time and memory from /proc.

Benches run as scripts (``python bench/x.py``): each puts the repository root on ``sys.path``
before importing ``bench.report``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def commit() -> str:
    """The short commit of HEAD (uncommitted changes not shown), or ``unknown``."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    """The CPU model, core count, Python and kernel versions."""
    try:
        cpu = next((line.partition(":")[2].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}


def machine_line() -> str:
    """``machine()`` and ``commit()`` on one line, for benches that print text."""
    m = machine()
    return (f"machine: {m['cpu']}, {m['cores']} cpus, python {m['python']}, "
            f"kernel {m['kernel']}, commit {commit()}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (/proc/pid/stat fields 14 and 15)."""
    return sum(cpu_times(pid))


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process, apart: system time is mostly the journal's
    writes and fsyncs and the sockets'."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in kB (neither for a zombie)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out
