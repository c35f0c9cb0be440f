"""``storeedge demo --stores 3`` run as a user runs it, checked through what it prints: every
store's sales equal in the ERP and in the scenario, and HQ's own API agreeing with both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_a_three_store_chain_reports_to_hq(tmp_path: Path) -> None:
    with open(tmp_path / "demo.stderr", "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "--log-format", "text", "demo",
             "--stores", "3", "--seconds", "40", "--workdir", str(tmp_path / "chain")],
            stdout=subprocess.PIPE, stderr=err, text=True, timeout=850)
    assert proc.returncode == 0, proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("storeedge demo: HQ at http://127.0.0.1:")
    report = json.loads(lines[-1])
    assert sorted(report["stores"]) == ["demo-01", "demo-02", "demo-03"]
    for sid, store in report["stores"].items():
        assert store["erp_drained"], sid
        assert store["truth"]["mismatches"] == 0, (sid, store["truth"])
        assert store["truth"]["scenario_sales_units"] > 0, sid
        hq = report["hq"][sid]
        assert hq["sales_units"] == store["truth"]["scenario_sales_units"], (sid, hq)
        assert hq["open_alerts"] == store["open_alerts"], (sid, hq)
        assert hq["online"] is True, sid
