from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storeflow.hallmark.records import (
    flatten_billing,
    flatten_order,
    normalise_id,
    parse_count,
    parse_date,
    parse_file_name,
    parse_money,
    record_path,
    snake,
    split_ids,
)


@pytest.mark.parametrize(
    ("raw", "amount"),
    [
        ("$1,234.56 ", Decimal("1234.56")),
        ("1234.56", Decimal("1234.56")),
        ("127.82  ", Decimal("127.82")),
        (" $0.10", Decimal("0.10")),
        ("(12.50)", Decimal("-12.50")),
        ("12.50-", Decimal("-12.50")),
        ("-$3.00", Decimal("-3.00")),
        ("1,000,000.01", Decimal("1000000.01")),
        (42, Decimal(42)),
        (0.1, Decimal("0.1")),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_parse_money(raw: Any, amount: Decimal | None) -> None:
    assert parse_money(raw) == amount


@pytest.mark.parametrize("raw", ["12,3x", "abc", "1.2.3", "NaN", "Infinity"])
def test_parse_money_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        parse_money(raw)


@pytest.mark.parametrize(
    ("raw", "count"),
    [
        ("12", 12),
        ("12.000", 12),
        ("12.00 ", 12),
        (" 6", 6),
        ("1,200", 1200),
        (24, 24),
        (6.0, 6),
        ("", None),
        (None, None),
    ],
)
def test_parse_count_takes_integer_and_decimal_text(raw: Any, count: int | None) -> None:
    assert parse_count(raw) == count


@pytest.mark.parametrize(("raw", "match"), [("23.98", "not a whole count"), ("six", "not a count"), (True, "count")])
def test_parse_count_rejects_fractions_and_words(raw: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_count(raw)


@pytest.mark.parametrize(
    ("raw", "day"),
    [
        ("09/01/2025", date(2025, 9, 1)),
        ("9/1/2025", date(2025, 9, 1)),
        ("2025-09-01", date(2025, 9, 1)),
        ("2025-09-01T10:00:00Z", date(2025, 9, 1)),
        (" 12/31/2024 ", date(2024, 12, 31)),
        ("00/00/0000", None),
        ("", None),
        (None, None),
        ("13/45/2025", None),
        ("not a date", None),
    ],
)
def test_parse_date(raw: Any, day: date | None) -> None:
    assert parse_date(raw) == day


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("orderCreationDate", "order_creation_date"),
        ("customerId", "customer_id"),
        ("retailsin1Wholesale", "retailsin1_wholesale"),
        ("upc", "upc"),
        ("PONumber", "po_number"),
        ("billingDocumentNumber", "billing_document_number"),
    ],
)
def test_snake(name: str, expected: str) -> None:
    assert snake(name) == expected


def test_flatten_order_and_billing_shapes() -> None:
    order = flatten_order(
        "3076428648",
        {"orderHeader": {"customerId": 1000055874, "orderTotal": "127.82 "}, "orderLines": {"lineItemNumber": 1}},
    )
    assert order == {
        "order_id": "3076428648",
        "customer_id": 1000055874,
        "order_total": "127.82 ",
        "order_lines": [{"line_item_number": 1}],
    }
    bill = flatten_billing("5055177281", {"invoiceHeader": {"billingDocumentDate": "09/02/2025"}, "invoiceDetails": []})
    assert bill == {"billing_document_id": "5055177281", "billing_document_date": "09/02/2025", "billing_lines": []}


@pytest.mark.parametrize(
    ("record", "stores", "expected"),
    [
        ({"customer_id": 1000055874, "order_creation_date": "09/01/2025"}, {"1000055874": "9"},
         "2025/09/store_9/order_1.json"),
        ({"customer_id": "1000055874", "order_creation_date": "09/01/2025"}, {},
         "2025/09/store_1000055874/order_1.json"),
        ({"customer_id": "1000055874", "order_creation_date": ""}, {"1000055874": "9"},
         "unknown-date/store_9/order_1.json"),
        ({"order_creation_date": "01/31/2024"}, {}, "2024/01/store_unknown/order_1.json"),
    ],
)  # fmt: skip
def test_record_path(record: dict[str, Any], stores: dict[str, str], expected: str) -> None:
    assert record_path(Path("/out"), "order", "1", record, stores) == Path("/out") / expected


def test_billing_path_uses_billing_date() -> None:
    record = {"customer_id": "5", "billing_document_date": "02/03/2025"}
    assert record_path(Path("d"), "billing", "77", record, {}) == Path("d/2025/02/store_5/billing_77.json")


@pytest.mark.parametrize(
    ("value", "ids"),
    [("8001, 8002", ["8001", "8002"]), ("8001", ["8001"]), ("", []), (None, []), (["1", " 2 "], ["1", "2"])],
)
def test_split_ids(value: Any, ids: list[str]) -> None:
    assert split_ids(value) == ids


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("order_3076428648.json", ("order", "3076428648")),
        ("billing_5055177281.json", ("billing", "5055177281")),
        (".order_1.json.tmp", None),
        ("notes.txt", None),
    ],
)
def test_parse_file_name(name: str, parsed: Any) -> None:
    assert parse_file_name(name) == parsed


@pytest.mark.parametrize(
    ("value", "text"), [(3076428648, "3076428648"), ("3076428648.0", "3076428648"), (" 12 ", "12")]
)
def test_one_id_type(value: Any, text: str) -> None:
    assert normalise_id(value) == text
