"""Full-store benchmark: the agent's memory and CPU with every device kind of a store running.

    .venv/bin/python bench/full_store.py [--seconds 60]

It runs ``storeedge demo --scenario full --seconds N`` in a fresh work directory (Mosquitto,
Tryton, the simulated store and the agent, each a process of the demo's), finds the agent from
``<workdir>/agent.pid`` (again after a restart) and samples it every second: VmRSS and VmHWM
from /proc/pid/status, user+system CPU from /proc/pid/stat. It prints the agent's peak RSS, its
steady RSS (the median of the second half of the run, with the slope there: a leak shows), its
CPU per reading, readings/s per device kind from the demo's final JSON line, and that line's
truth check. Figures are printed with the machine and the commit; nothing is asserted on speed.
The exit status is 1 when the demo failed, its truth does not hold, or the agent restarted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import commit, cpu_seconds, machine, memory_kb  # noqa: E402

DEMO_OVERHEAD_S = 420.0  # start-up, the sim's stop and the ERP drain, beyond --seconds


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, parents before children. The demo puts its children
    in sessions of their own, so this is how they are found if it must be killed."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def stop_demo(demo: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the demo (it stops what it started); if it has not ended after ``grace``, end
    it and everything it started, by pid."""
    if demo.poll() is not None:
        return
    tree = descendants(demo.pid)
    demo.send_signal(signal.SIGTERM)
    try:
        demo.wait(grace)
        return
    except subprocess.TimeoutExpired:
        pass
    tree = [*dict.fromkeys(tree + descendants(demo.pid))]
    demo.kill()
    demo.wait()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in tree:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if Path(f"/proc/{p}").exists()]
            time.sleep(0.2)
        tree = alive
    print(f"full_store: the demo did not stop in {grace:.0f}s; killed it and its processes",
          file=sys.stderr)


class AgentSampler:
    """Samples the agent process named by ``agent.pid``; a restarted agent is a new process
    whose CPU adds to the total."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.samples: list[tuple[float, int]] = []  # (time, VmRSS kB)
        self.hwm_kb = 0
        self.cpu: dict[int, float] = {}  # pid -> its last CPU seconds
        self.pid: int | None = None

    def sample(self) -> None:
        try:
            pid = int(self.pid_file.read_text())
            kb = memory_kb(pid)
            cpu = cpu_seconds(pid)
        except (OSError, ValueError):
            return  # not started yet, or just gone
        if "VmRSS" not in kb:
            return  # a zombie
        self.pid = pid
        self.samples.append((time.monotonic(), kb["VmRSS"]))
        self.hwm_kb = max(self.hwm_kb, kb.get("VmHWM", 0))
        self.cpu[pid] = cpu

    @property
    def restarts(self) -> int:
        return max(0, len(self.cpu) - 1)

    def figures(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        t0 = self.samples[0][0]
        half = [(t - t0, kb / 1024) for t, kb in self.samples if t - t0 >= self.span / 2]
        slope = None
        if len(half) >= 3:
            ts, mb = zip(*half, strict=True)
            slope = round(statistics.linear_regression(ts, mb).slope * 60, 2)
        return {"samples": len(self.samples), "seconds_sampled": round(self.span, 1),
                "rss_peak_mb": round(self.hwm_kb / 1024, 1),
                "rss_steady_mb": round(statistics.median(m for _, m in half), 1),
                "rss_steady_min_mb": round(min(m for _, m in half), 1),
                "rss_steady_max_mb": round(max(m for _, m in half), 1),
                "rss_slope_mb_per_min": slope, "cpu_seconds": round(sum(self.cpu.values()), 2)}

    @property
    def span(self) -> float:
        return self.samples[-1][0] - self.samples[0][0] if self.samples else 0.0


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the store runs")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="storeedge-full-"))
    stdout, stderr = workdir / "demo.out", workdir / "demo.err"
    sampler = AgentSampler(workdir / "agent.pid")
    wrong: list[str] = []
    started = time.monotonic()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "--log-format", "text", "demo",
             "--scenario", "full", "--seconds", str(args.seconds), "--workdir", str(workdir)],
            cwd=ROOT, stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = started + args.seconds + DEMO_OVERHEAD_S
        while demo.poll() is None:
            if time.monotonic() > deadline:
                wrong.append(f"the demo did not end within {args.seconds + DEMO_OVERHEAD_S:.0f}s")
                break
            sampler.sample()
            time.sleep(1.0)
    except KeyboardInterrupt:
        wrong.append("interrupted")
    finally:
        stop_demo(demo, grace=30.0 if wrong else 150.0)
    elapsed = time.monotonic() - started
    final = last_json_line(stdout.read_text(errors="replace"))
    if demo.returncode != 0:
        wrong.append(f"the demo exited with {demo.returncode}")
    if final is None:
        wrong.append("the demo printed no final JSON line")
        final = {}
    figures = sampler.figures()
    if not figures:
        wrong.append("the agent was never sampled")
    restarts = max(sampler.restarts, final.get("agent_restarts") or 0)
    if restarts:
        wrong.append(f"the agent restarted {restarts} times")
    readings: dict[str, int] = dict(final.get("readings") or {})
    total = readings.pop("total", 0)
    seconds = float(final.get("seconds") or args.seconds)
    truth = final.get("truth") or {}
    if truth.get("mismatches") != 0:
        wrong.append(f"truth: {truth}")
    cpu = figures.get("cpu_seconds")
    report = {
        "bench": "full_store", "commit": commit(), "machine": machine(),
        "seconds": args.seconds, "wall_seconds": round(elapsed, 1), "agent": figures,
        "readings_total": total,
        "readings_per_s": {kind: round(n / seconds, 1) for kind, n in sorted(readings.items())},
        "readings_per_s_total": round(total / seconds, 1),
        "agent_cpu_ms_per_reading": round(1000 * cpu / total, 3) if cpu and total else None,
        # CPU over the agent's whole life (start-up and the ERP drain too) per run second.
        "agent_cpu_pct_of_run": round(100 * cpu / seconds, 1) if cpu else None,
        "tag_events": final.get("tag_events"), "suspect_items": final.get("suspect_items"),
        "devices": final.get("devices"), "alerts": final.get("alerts"),
        "erp_drained": final.get("erp_drained"), "truth": truth,
        "wrong": wrong, "ok": not wrong, "workdir": str(workdir),
    }
    print(json.dumps(report, indent=2))
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
