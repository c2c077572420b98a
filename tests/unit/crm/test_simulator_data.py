from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from storeflow.crm.reports import TD_ORDER_REPORT, UC_GST_XLSX, read_xlsx
from storeflow.sandbox import tumbledry, uclean


def test_rows_are_deterministic_per_seed_store_and_day() -> None:
    day = date(2025, 11, 12)
    assert tumbledry.order_rows(1, "a668", day) == tumbledry.order_rows(1, "a668", day)
    assert tumbledry.order_rows(1, "a668", day) != tumbledry.order_rows(2, "a668", day)
    assert tumbledry.order_rows(1, "a668", day) != tumbledry.order_rows(1, "a817", day)
    assert uclean.gst_rows(1, "sector56", day) == uclean.gst_rows(1, "sector56", day)


def test_same_report_same_bytes_and_it_parses_back(tmp_path: Path) -> None:
    start, end = date(2025, 11, 10), date(2025, 11, 12)
    rows = tumbledry.report_rows(0, "a668", start, end)
    first = tumbledry.order_report_xlsx(rows, start, end)
    assert first == tumbledry.order_report_xlsx(rows, start, end)  # an unchanged report is a duplicate by md5
    path = tmp_path / "td.xlsx"
    path.write_bytes(first)
    parsed = read_xlsx(path, TD_ORDER_REPORT)
    net = TD_ORDER_REPORT.fields.index("net_amount")
    assert (len(parsed.rows), parsed.skipped_footer, parsed.rejects) == (
        len(rows),
        3,
        [],
    )  # empty line + 2 footer lines
    assert round(sum(r[net] for r in parsed.rows), 2) == round(sum(r["Net Amount"] for r in rows), 2)
    at, activity = TD_ORDER_REPORT.fields.index("order_at"), TD_ORDER_REPORT.fields.index("last_activity")
    assert all(isinstance(r[activity], datetime) and r[activity] >= r[at] for r in parsed.rows)

    gst = uclean.report_rows(0, "sector56", start, end)
    path = tmp_path / "uc.xlsx"
    path.write_bytes(uclean.gst_xlsx(gst))
    parsed = read_xlsx(path, UC_GST_XLSX)
    final = UC_GST_XLSX.fields.index("final_amount")
    assert (len(parsed.rows), parsed.skipped_footer) == (len(gst), 2)  # empty line + totals row
    assert round(sum(r[final] for r in parsed.rows), 2) == round(sum(r["final_amount"] for r in gst), 2)
