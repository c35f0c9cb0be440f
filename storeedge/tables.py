"""Tables as files, for the reports HQ and a store's manager download: CSV (UTF-8, header row)
and XLSX (one sheet, header row frozen)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def columns(rows: Sequence[dict[str, Any]], default: Sequence[str]) -> list[str]:
    return list(rows[0]) if rows else list(default)


def to_csv(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(cols), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def to_xlsx(rows: Sequence[dict[str, Any]], cols: Sequence[str], title: str) -> bytes:
    # Imported here: openpyxl (and numpy, which it loads) cost a store agent ~20 MB of memory
    # for the rare download of a spreadsheet.
    from openpyxl import Workbook

    book = Workbook(write_only=False)
    sheet = book.active
    assert sheet is not None  # a new workbook always has one sheet
    sheet.title = title[:31]  # Excel's limit for a sheet name
    sheet.append(list(cols))
    for row in rows:
        sheet.append([row.get(c) for c in cols])
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
