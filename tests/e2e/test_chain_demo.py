"""``storeedge demo --stores 3`` run as a user runs it, checked through what it prints: every
store's sales equal in its own ERP warehouse and in its scenario, no alert the scenario does not
justify, and HQ's own API agreeing with the scenario: sales, lanes out of stock, open alerts,
and each store's planted incident."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# What each chain scenario plants, and the alert by which HQ must show it.
PLANTED = {"demo-01": ("sell_out", "out_of_stock"), "demo-02": ("tag_walkout", "shrink"),
           "demo-03": ("scan_avoidance", "checkout_suspect")}


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
    scenarios = {sid: store["scenario"] for sid, store in report["stores"].items()}
    assert scenarios == {"demo-01": "chain-01", "demo-02": "chain-02", "demo-03": "chain-03"}
    for sid, store in report["stores"].items():
        assert store["warehouse"] == sid.upper()
        assert store["erp_drained"], sid
        assert store["truth"]["mismatches"] == 0, (sid, store["truth"])
        assert store["truth"]["scenario_sales_units"] > 0, sid
        assert store["false_alerts"] == 0, (sid, store["false_alert_list"])
        kind, rule = PLANTED[sid]
        assert [(p["kind"], p["hq_rule"]) for p in store["planted"]] == [(kind, rule)], sid

        hq = report["hq"][sid]
        assert hq["mismatches"] == [], (sid, hq)
        assert hq["online"] is True, sid
        assert hq["sales_units"] == store["truth"]["scenario_sales_units"], (sid, hq)
        assert hq["lanes_out_of_stock"] == len(store["lanes_out_of_stock"]), (sid, hq)
        assert hq["open_alerts"] == hq["store_open_alerts"], (sid, hq)
        assert rule in hq["open_alert_rules"], (sid, hq)
    # The sold-out lane is out of stock at HQ, as the scenario made it.
    assert "B1-1" in report["stores"]["demo-01"]["lanes_out_of_stock"]
    assert report["hq"]["demo-01"]["lanes_out_of_stock"] >= 1
