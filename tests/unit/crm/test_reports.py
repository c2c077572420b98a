from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest

from storeflow.crm.files import canonical_name, expired_files, extension_for, keep_until, safe_store_name
from storeflow.crm.ingest import copy_text_column
from storeflow.crm.reports import (
    CONVERTERS,
    TD_ORDER_REPORT,
    UC_GST_XLSX,
    BadValue,
    RawReport,
    ReportError,
    convert_rows,
    is_footer,
    read_xlsx,
    to_amount,
    to_date,
    to_datetime,
    to_int,
    to_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12 Nov 2025 10:32 AM", datetime(2025, 11, 12, 10, 32)),
        ("12 Nov 2025 12:05 AM", datetime(2025, 11, 12, 0, 5)),
        ("12 Nov 2025 12:05 PM", datetime(2025, 11, 12, 12, 5)),
        ("2 nov 2025 1:05pm", datetime(2025, 11, 2, 13, 5)),
        ("12/11/2025 10:32", datetime(2025, 11, 12, 10, 32)),
        ("12-11-2025", datetime(2025, 11, 12)),
        ("12 Nov 2025 22:05", datetime(2025, 11, 12, 22, 5)),
        ("12 Nov 2025", datetime(2025, 11, 12)),
        ("12/11/2025", datetime(2025, 11, 12)),
        ("2025-11-12 09:15:00", datetime(2025, 11, 12, 9, 15)),
        ("2025-11-12T09:15:00", datetime(2025, 11, 12, 9, 15)),
        (datetime(2025, 11, 12, 8, 0), datetime(2025, 11, 12, 8, 0)),
        (date(2025, 11, 12), datetime(2025, 11, 12)),
        (45973.5, datetime(2025, 11, 12, 12, 0)),
        ("", None),
        (None, None),
    ],
)
def test_to_datetime(raw: object, expected: datetime | None) -> None:
    assert to_datetime(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,234.50", 1234.5),
        ("₹ 12,34,567.00", 1234567.0),
        ("Rs. 99", 99.0),
        ("(150.25)", -150.25),
        (1530.0, 1530.0),
        (7, 7.0),
        ("-", None),
        ("", None),
        (None, None),
    ],
)
def test_to_amount(raw: object, expected: float | None) -> None:
    assert to_amount(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+91 98765 43210", "9876543210"),
        ("+91-9876543210", "9876543210"),
        ("987-654-3210", "9876543210"),
        ("98765432O1", "9876543201"),
        ("09876543210", "9876543210"),
        (9876543210.0, "9876543210"),
        ("", None),
    ],
)
def test_to_phone(raw: object, expected: str | None) -> None:
    assert to_phone(raw) == expected


@pytest.mark.parametrize(
    ("convert", "raw"),
    [
        (to_amount, "12abc"),
        (to_amount, True),
        (to_phone, "12345"),
        (to_date, "32 Foo 2025"),
        (to_date, "31/02/2025"),
        (to_date, "12 Nov 2025 13:05 PM"),
        (to_int, "2.5"),
    ],
)
def test_bad_values_raise(convert: object, raw: object) -> None:
    with pytest.raises(BadValue):
        convert(raw)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("cells", "key", "footer"),
    [
        (["Total records : 25"], None, True),
        (["Report generated for 10 Nov 2025 - 12 Nov 2025"], None, True),
        (["", "Total", "", 1000.0, 90.0], "Total", True),
        ([None, None, None], None, True),
        (["12 Nov 2025 10:00 AM", "A668X1", "C1", "Name"], "A668X1", False),
        ([1, "UC1", "INV/1", "12/11/2025"], "UC1", False),
    ],
)
def test_is_footer(cells: list[object], key: object, footer: bool) -> None:
    assert is_footer(cells, key) is footer


def _td_row(**over: object) -> list[object]:
    values: dict[str, object] = {h: "" for h in TD_ORDER_REPORT.headers}
    values.update(
        {
            "Order Date / Time": "12 Nov 2025 10:32 AM",
            "Order No.": "A66801",
            "Pcs.": 3,
            "Weight": 1.2,
            "Gross Amount": "1,200.00",
            "Discount": 0,
            "Tax": 216,
            "Net Amount": "1,416.00",
            "Advance": 0,
            "Paid": 0,
            "Adjustment": 0,
            "Balance": "1,416.00",
            "Advance Received": 0,
            "Advance Used": 0,
            "Phone": "+91 98765 43210",
        }
    )
    values.update(over)
    return [values[h] for h in TD_ORDER_REPORT.headers]


def test_convert_rows_types_rejects_and_remarks() -> None:
    header = TD_ORDER_REPORT.headers
    records = [
        _td_row(),
        _td_row(**{"Order No.": "A66802", "Net Amount": "12x"}),  # bad amount: rejected
        _td_row(**{"Order No.": "A66803", "Phone": "12345"}),  # bad phone: kept, NULL + remark
        ["Total records : 3"],
    ]
    parsed = convert_rows(TD_ORDER_REPORT, header, records, "f.xlsx")
    fields = TD_ORDER_REPORT.fields
    first = dict(zip(fields, parsed.rows[0], strict=False))
    assert first["order_date"] == date(2025, 11, 12)
    assert first["net_amount"] == 1416.0 and first["phone"] == "9876543210"
    assert [n for n, _, _ in parsed.rejects] == [3]
    assert "Net Amount: not an amount: '12x'" in parsed.rejects[0][1]
    third = dict(zip(fields, parsed.rows[1], strict=False))
    assert third["phone"] is None and "Phone: not a phone number" in third["remarks"]
    assert parsed.skipped_footer == 1


@pytest.mark.parametrize(
    ("cell", "stored", "remark"),
    [
        ("12 Nov 2025 06:10 PM", datetime(2025, 11, 12, 18, 10), None),
        ("2025-11-12T18:10:00", datetime(2025, 11, 12, 18, 10), None),
        (datetime(2025, 11, 12, 18, 10), datetime(2025, 11, 12, 18, 10), None),
        ("", None, None),
        ("Ready", None, "Last Activity: not a date: 'Ready'"),  # the old status words: kept as a remark
    ],
)
def test_last_activity_is_a_datetime_and_a_word_becomes_a_remark(
    cell: object, stored: datetime | None, remark: str | None
) -> None:
    parsed = convert_rows(TD_ORDER_REPORT, TD_ORDER_REPORT.headers, [_td_row(**{"Last Activity": cell})], "f.xlsx")
    assert parsed.rejects == []
    row = dict(zip(TD_ORDER_REPORT.fields, parsed.rows[0], strict=False))
    assert (row["last_activity"], row["remarks"]) == (stored, remark)


def test_convert_rows_column_fast_paths_match_cell_converters() -> None:
    """Whole-column fast paths (all text, all floats) give what each cell's converter gives."""
    header = TD_ORDER_REPORT.headers
    records = [
        _td_row(**{"Name": "  Asha   Rao ", "Customer Code": 1234.0, "Address": "", "Net Amount": 10.5}),
        _td_row(**{"Order No.": "A66802", "Name": "Ravi", "Address": "Line 1\nLine 2", "Net Amount": "2,000"}),
        _td_row(**{"Order No.": "A66803", "Name": None, "Tags": "a\tb", "Phone": "98O-111-2222"}),
    ]
    parsed = convert_rows(TD_ORDER_REPORT, header, records, "f.xlsx")
    assert parsed.rejects == []
    assert list(zip(*parsed.columns, strict=True)) == [row[:-1] for row in parsed.rows]
    assert [json.loads(row[-1])["Name"] for row in parsed.rows] == ["  Asha   Rao ", "Ravi", None]
    fields = TD_ORDER_REPORT.fields
    for record, row in zip(records, parsed.rows, strict=True):
        got = dict(zip(fields, row, strict=False))
        for column, cell in zip(TD_ORDER_REPORT.columns, record, strict=True):
            assert got[column.field] == CONVERTERS[column.kind](cell), column.header
    names = [dict(zip(fields, r, strict=False))["customer_name"] for r in parsed.rows]
    assert names == ["Asha Rao", "Ravi", None]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a", "b c"], ["a", "b c"]),
        (["a", None], ["a", "\\N"]),
        (["back\\slash", None], ["back\\\\slash", "\\N"]),
        (["tab\there", "new\nline\r"], ["tab\\there", "new\\nline\\r"]),
        ([1.5, 2.0, None], ["1.5", "2.0", "\\N"]),
        ([3, 1234567.25], ["3", "1234567.25"]),
        ([date(2025, 11, 12), None], ["2025-11-12", "\\N"]),
        ([datetime(2025, 11, 12, 10, 32), "x\ty"], ["2025-11-12T10:32:00", "x\\ty"]),
        ([], []),
    ],
)
def test_copy_text_column(values: list[object], expected: list[str]) -> None:
    assert copy_text_column(values) == expected


def test_missing_column_is_named() -> None:
    header = [h for h in UC_GST_XLSX.headers if h != "Total Invoice Value"]
    with pytest.raises(ReportError, match="missing column\\(s\\) 'Total Invoice Value'"):
        convert_rows(UC_GST_XLSX, header, [], "gst.xlsx")


def test_not_an_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    path.write_bytes(b"<html>error</html>")
    with pytest.raises(ReportError, match="not an XLSX file"):
        read_xlsx(path, UC_GST_XLSX)


@pytest.mark.parametrize(
    ("crm", "store", "ext", "expected"),
    [
        ("td", "Uttam Nagar", "xlsx", "TD_OrderReport_UttamNagar_2025-11-12_to_2025-11-13.xlsx"),
        ("uc", "Sector 56, Gurugram", ".XLSX", "UC_GST_Sector56Gurugram_2025-11-12_to_2025-11-13.xlsx"),
        ("uc", "Sushant Lok 1, Gurugram", "json", "UC_GST_SushantLok1Gurugram_2025-11-12_to_2025-11-13.json"),
    ],
)
def test_canonical_name(crm: str, store: str, ext: str, expected: str) -> None:
    report = "OrderReport" if crm == "td" else "GST"
    assert canonical_name(crm, report, store, date(2025, 11, 12), date(2025, 11, 13), ext) == expected


@pytest.mark.parametrize(
    ("ctype", "name", "body", "ext"),
    [
        (None, "OrderReport_a668.xlsx", b"", "xlsx"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", None, b"", "xlsx"),
        ("application/json; charset=utf-8", None, b"[]", "json"),
        ("application/octet-stream", None, b"PK\x03\x04rest", "xlsx"),
        ("text/html", None, b"<html>", "bin"),
    ],
)
def test_extension_for(ctype: str | None, name: str | None, body: bytes, ext: str) -> None:
    assert extension_for(ctype, name, body) == ext


def test_retention_rules() -> None:
    now = datetime(2025, 11, 12, 12, 0)
    assert keep_until(now, 0, keep_files=True) is None
    assert keep_until(now, 3, keep_files=False) == datetime(2025, 11, 15, 12, 0)
    files = [(Path("old.xlsx"), datetime(2025, 11, 1)), (Path("new.xlsx"), datetime(2025, 11, 12, 11))]
    assert expired_files(files, now, 7) == [Path("old.xlsx")]
    assert safe_store_name("Sushant Lok 1, Gurugram") == "SushantLok1Gurugram"


def test_raw_json_is_json_dumps_of_the_cells_by_header() -> None:
    from datetime import time, timedelta

    from storeflow.crm.reports import ParsedReport, _jsonable

    headers = ["h%1", "dup", "é", "flag", "n", "at", "day", "t", "span", "text", "dup"]
    cells = [
        [
            "a%b",
            1.5,
            None,
            True,
            3,
            datetime(2020, 1, 2, 3, 4),
            date(2020, 1, 1),
            time(1, 2),
            timedelta(1),
            'é"\\\n',
            "x",
        ],
        ["", -0.0, 1e300, False, 10**20, None, None, None, None, "ok", 2.0],
    ]
    parsed = ParsedReport(TD_ORDER_REPORT, [], [2, 3], [], cells=cells, headers=headers)  # type: ignore[arg-type]
    expected = [json.dumps(dict(zip(headers, c, strict=True)), default=_jsonable) for c in cells]
    assert parsed.raw_json() == expected
    assert parsed.raw_json(1, 2) == expected[1:]
    assert parsed.raw_json(2) == []


def test_chunks_convert_like_the_whole_report() -> None:
    header = TD_ORDER_REPORT.headers
    good = dict.fromkeys(header, "")
    records = []
    for i in range(7):
        row = {**good, "Order Date / Time": f"0{i + 1} Jan 2020 06:02 PM", "Order No.": f"A{i}"}
        row.update(
            {
                h: 1.0
                for h in (
                    "Pcs.",
                    "Weight",
                    "Gross Amount",
                    "Discount",
                    "Tax",
                    "Net Amount",
                    "Advance",
                    "Paid",
                    "Adjustment",
                    "Balance",
                    "Advance Received",
                    "Advance Used",
                )
            }
        )
        records.append([row[h] for h in header])
    records[2][0] = "not a date"  # a reject in the first chunk
    records[5][header.index("Net Amount")] = "abc"  # and one in the second
    records.append(["Total", *[""] * (len(header) - 1)])  # a footer
    raw = RawReport(TD_ORDER_REPORT, header, records, "td.xlsx", 2)
    whole = raw.convert()
    parts = list(raw.chunks(4))
    assert len(parts) == 2
    assert [n for p in parts for n in p.row_numbers] == whole.row_numbers == [2, 3, 5, 6, 8]
    assert [r for p in parts for r in p.rejects] == whole.rejects and [r[0] for r in whole.rejects] == [4, 7]
    assert sum(p.skipped_footer for p in parts) == whole.skipped_footer == 1
    assert [row for p in parts for row in p.rows] == whole.rows
    assert [len(list(RawReport(TD_ORDER_REPORT, header, [], "e.xlsx", 2).chunks(4)))] == [1]


@pytest.mark.parametrize(
    "column",
    [
        ["01 Jan 2020 06:02 PM", "12/11/2025 10:32", "", "  ", "03 Jan 2020"] * 20,
        ["31/31/2025", "01 Jan 2020"] * 40,  # a bad value: the general path names it
        ["01  Jan 2020", "2025-11-12 10:32:00"] * 40,  # extra space, ISO text: the general path
        ["12 PM 2020"] * 80,
    ],
)
@pytest.mark.parametrize("kind", ["datetime", "date"])
def test_column_conversion_matches_cell_by_cell(column: list[str], kind: str) -> None:
    from storeflow.crm.reports import _convert_column

    def one(value: str) -> tuple[object, str | None]:
        try:
            return CONVERTERS[kind](value), None
        except BadValue as exc:
            return None, str(exc)

    values, errors = _convert_column(column, CONVERTERS[kind], kind)
    expected = [one(v) for v in column]
    assert list(values) == [v for v, _ in expected]
    assert errors == {i: e for i, (_, e) in enumerate(expected) if e}
