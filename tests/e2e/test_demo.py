"""The store-in-a-box demo, run as a user runs it, checked only through what it prints and what
the ERP holds: the final JSON's truth is read back from Tryton by the demo itself."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import pytest

from tests.demo_process import agent_health, final_report, start_demo, stop_demo, wait_for

pytestmark = pytest.mark.e2e


def test_demo_books_every_sale_in_the_erp_and_raises_low_stock(tmp_path):
    workdir = tmp_path / "demo"
    report = final_report(start_demo(workdir, 35), timeout=300)
    assert report["alerts"]["low_stock"] >= 1
    assert report["erp_moves"] >= 1
    # summarised: one ERP document per minute's window of sales, not one per receipt
    assert report["erp_summary_window_s"] == 60
    assert report["erp_documents"] < report["sales"]
    assert report["readings"]["total"] > 100
    assert report["readings"]["shelf_modbus"] > 0 and report["readings"]["shelf_mqtt"] > 0
    assert report["tsdb_points"] > 0
    assert report["alerts_heard"] == sum(report["alerts"].values())
    assert report["false_alerts"] == 0, report["false_alert_list"]
    assert report["duplicate_alerts"] == 0, report["duplicate_alert_list"]
    truth = report["truth"]
    assert truth["scenario_sales_units"] > 0
    assert truth["erp_sold_units"] == truth["scenario_sales_units"]
    assert truth["mismatches"] == 0
    assert truth["tsdb_sold_units"] == truth["scenario_sales_units"]


def test_kill_9_of_the_agent_mid_run_loses_and_duplicates_nothing(tmp_path):
    workdir = tmp_path / "demo"
    proc = start_demo(workdir, 45)
    try:
        # Kill once the agent has accepted sales and is delivering them to the ERP.
        wait_for(lambda: (agent_health(workdir) or {}).get("counters", {}).get("sales", 0) >= 4,
                 240, "the agent to accept sales")
        first = int((workdir / "agent.pid").read_text())
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: int((workdir / "agent.pid").read_text()) != first, 30,
                 "the demo to restart the agent")
        wait_for(lambda: (agent_health(workdir) or {}).get("counters", {}).get("sales", 0) >= 2,
                 60, "the restarted agent to accept sales")
        second = int((workdir / "agent.pid").read_text())
        os.kill(second, signal.SIGKILL)
        report = final_report(proc, timeout=300)
    finally:
        stop_demo(proc)
    assert report["agent_restarts"] >= 2
    truth = report["truth"]
    assert truth["scenario_sales_units"] > 0
    assert truth["mismatches"] == 0, truth
    assert truth["erp_sold_units"] == truth["scenario_sales_units"]


def test_full_store_finds_every_planted_incident(tmp_path):
    """Every device kind, a scan-avoidance at the kiosk, an unplugged shelf and a tagged
    product carried out without a sale (firmware_sim/scenarios/full.yaml)."""
    workdir = tmp_path / "demo"
    proc = start_demo(workdir, 90, "--scenario", "full")
    report = final_report(proc, timeout=480)  # 90 s, start-up, the last 60 s sales window
    kinds = {"shelf_modbus", "shelf_mqtt", "rfid_zebra", "rfid_serial", "scanner", "checkout",
             "camera", "zigbee2mqtt"}
    assert {k for k, n in report["readings"].items() if n > 0} >= kinds
    assert report["tag_events"] >= 1
    assert report["suspect_items"] >= 1
    assert report["alerts"].get("checkout_suspect", 0) == 1
    history = report["device_history"]["shelf-a2"]  # unplugged at 35 s, plugged back at 50 s
    assert history[:3] == ["online", "offline", "online"]
    assert report["devices"] == {"online": 11}
    assert report["alerts_heard"] == sum(report["alerts"].values())
    assert "sim" not in report["restarts"], report  # one simulated world, one truth
    assert report["false_alerts"] == 0, report["false_alert_list"]
    assert report["duplicate_alerts"] == 0, report["duplicate_alert_list"]
    truth = report["truth"]
    assert truth["scenario_sales_units"] > 0
    assert truth["mismatches"] == 0, truth


def restarted(pid_file: Path, old_pid: int) -> bool:
    return int(pid_file.read_text()) != old_pid


def test_demo_restarts_a_killed_broker_and_erp_and_still_books_every_sale(tmp_path):
    workdir = tmp_path / "demo"
    proc = start_demo(workdir, 45)
    try:
        wait_for(lambda: (agent_health(workdir) or {}).get("counters", {}).get("sales", 0) >= 2,
                 240, "the agent to accept sales")
        killed = {}
        for role in ("broker", "erp"):
            killed[role] = int((workdir / f"{role}.pid").read_text())
            os.kill(killed[role], signal.SIGKILL)
        for role, pid in killed.items():
            wait_for(functools.partial(restarted, workdir / f"{role}.pid", pid), 60,
                     f"the demo to restart the {role}")
        report = final_report(proc, timeout=300)
    finally:
        stop_demo(proc)
    assert report["restarts"]["broker"] >= 1 and report["restarts"]["erp"] >= 1, report
    truth = report["truth"]
    assert truth["scenario_sales_units"] > 0
    assert truth["mismatches"] == 0, truth
    assert truth["erp_sold_units"] == truth["scenario_sales_units"]
