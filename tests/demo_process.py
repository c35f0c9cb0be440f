"""A ``storeedge demo`` run as a user runs it, for the end-to-end and chaos tests: started,
watched through its files and the agent's HTTP, ended with its report or stopped cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml


def start_demo(workdir: Path, seconds: int, *args: str) -> subprocess.Popen[str]:
    """``storeedge demo`` as a user starts it; its log goes beside ``workdir``."""
    workdir.parent.mkdir(parents=True, exist_ok=True)
    with open(workdir.parent / "demo.stderr", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "--log-format", "text", "demo",
             "--seconds", str(seconds), "--workdir", str(workdir), *args],
            stdout=subprocess.PIPE, stderr=stderr, text=True)


def stop_demo(proc: subprocess.Popen[str]) -> None:
    """End a demo the test gave up on as a user would (Ctrl-C twice), so that it stops every
    child it started; kill it only if it does not end."""
    for _ in range(2):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def final_report(proc: subprocess.Popen[str], timeout: float) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith("storeedge demo: handheld page http://127.0.0.1:")
    return json.loads(lines[-1])


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def agent_url(workdir: Path) -> str:
    port = yaml.safe_load((workdir / "store.yaml").read_text())["http"]["port"]
    return f"http://127.0.0.1:{port}"


def agent_health(workdir: Path) -> dict | None:
    """The agent's /readyz, or None while it does not answer."""
    try:
        return httpx.get(agent_url(workdir) + "/readyz", timeout=2).json()
    except (OSError, httpx.HTTPError, ValueError, TypeError, KeyError):
        return None
