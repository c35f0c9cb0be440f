"""Report tables as files, and what producing them costs a store agent that never does."""

from __future__ import annotations

import io
import subprocess
import sys

from openpyxl import load_workbook

from storeedge.tables import columns, to_csv, to_xlsx

ROWS = [{"store": "s1", "sku": "COLA", "units": 3}, {"store": "s1", "sku": "酸奶", "units": 1}]


def test_csv_and_xlsx_hold_the_same_rows_under_one_header():
    cols = columns(ROWS, ["unused"])
    assert to_csv(ROWS, cols).decode().splitlines() == [
        "store,sku,units", "s1,COLA,3", "s1,酸奶,1"]
    sheet = load_workbook(io.BytesIO(to_xlsx(ROWS, cols, "sales by store and sku"))).active
    assert sheet.title == "sales by store and sku"
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [
        ["store", "sku", "units"], ["s1", "COLA", 3], ["s1", "酸奶", 1]]
    assert sheet.freeze_panes == "A2"


def test_an_empty_report_still_has_its_header():
    assert to_csv([], columns([], ["store", "units"])) == b"store,units\r\n"


def test_a_store_agent_starts_without_the_spreadsheet_or_gs1_libraries():
    """openpyxl, and the numpy it loads, are ~20 MB of a store agent's memory: loaded on the
    first download of a spreadsheet, not at start. biip is 19 MB more (GS1's company-prefix
    table, built at its import): loaded at the first GS1 element string a scanner reads, not
    by the catalog's GTINs, EPCs or check digits, which are read here."""
    code = ("import sys, edge_agent.agent\n"
            "from devices.rfid.epc import decode\n"
            "from devices.scanner.gs1 import to_gtin14\n"
            "assert to_gtin14('4006381333931') == '04006381333931'\n"
            "assert decode('3074257bf7194e4000001a85').gtin == '80614141123458'\n"
            "print(sorted(m for m in ('openpyxl', 'numpy', 'biip') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True).stdout.strip()
    assert loaded == "[]"
