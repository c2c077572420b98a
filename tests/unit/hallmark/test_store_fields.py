"""The importer's field tables (`hallmark/store.py`) against the schema snapshot and the statements built from them."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storeflow.hallmark import store
from storeflow.hallmark.importer import BadRecordError, billing_statements, order_statements
from storeflow.hallmark.records import parse_int, parse_text

SCHEMA = Path(store.__file__).resolve().parents[1] / "db" / "schema.sql"


def _columns(table: str) -> dict[str, str]:
    body = re.search(rf"CREATE TABLE public\.{table} \((.*?)\n\);", SCHEMA.read_text(), re.S)
    assert body, f"{table} not in {SCHEMA}"
    return {line.split()[0]: line.split()[1] for line in body.group(1).strip().splitlines()}


SQL_TYPES = {"text": "text", "int": "integer", "numeric": "numeric", "date": "date"}


@pytest.mark.parametrize("doc", [store.ORDERS, store.BILLING], ids=lambda d: d.table)
def test_every_field_is_a_column_of_its_table_with_the_converters_type(doc: store.Document) -> None:
    header, lines = _columns(doc.table), _columns(doc.lines_table)
    assert {f.column for f in doc.header} | {"raw_data", "imported_at"} == set(header)
    assert {f.column for f in doc.lines} | {doc.key, "line_index", "raw_data"} == set(lines)
    for f in doc.header + doc.lines:
        if f.convert is not None:
            table = header if f in doc.header else lines
            assert table[f.column].startswith(SQL_TYPES[f.convert.sql_type]), f.column
    for link in doc.links:
        assert set(_columns(link.table)) == {doc.key, link.column, "raw_data"}


def _placeholders(statement: str) -> set[str]:
    return set(re.findall(r"%\((\w+)\)s", statement))


def test_the_statements_bind_exactly_the_parameters_the_importer_gives() -> None:
    order = {"order_id": "3000000001", "customer_id": "1000055874", "order_total": "$1,234.56 ",
             "delivery_id": "8001, 8002", "order_lines": [{"quantity": 2, "wholesales": "10.50 "}]}  # fmt: skip
    ((statement, params),), lines = order_statements(order, "f.json", {"1000055874": ("9", "Reston")})
    assert lines == 1 and statement == store.IMPORT_ORDER
    assert _placeholders(statement) == set(params)
    assert (params["order_id"], params["store_number"]) == ("3000000001", "9")
    assert params["order_total"] == Decimal("1234.56")
    assert params["deliveries_ids"] == ["8001", "8002"]
    assert '"quantity": "2"' in params["lines"] and '"wholesales": "10.50"' in params["lines"]

    bill = {"billing_document_number": "5001", "billing_lines": {"billed_quantity": "3", "net_amount": "$4.00"}}
    ((statement, params),), lines = billing_statements(bill, "b.json", {})
    assert lines == 1 and statement == store.IMPORT_BILLING
    assert _placeholders(statement) == set(params)
    assert params["billing_document_id"] == "5001"
    assert '"quantity": "3"' in params["lines"] and '"net_amount": "4.00"' in params["lines"]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"billing_document_id": "1", "billing_lines": [{"quantity": "lots"}]}, "BadRecordError: quantity: not an"),
        ({"billing_document_id": "1", "billing_lines": {"billed_quantity": "?"}}, "billed_quantity: not an amount"),
        ({"billing_document_id": "1", "billing_lines": [{"line_item_number": "x1"}]}, "line_item_number: not a number"),
        ({"billing_document_id": "1", "total": "12,3x"}, "total: not an amount"),
        ({"billing_document_id": "1", "billing_lines": ["x"]}, "billing line 1 is not an object"),
        ({"billing_lines": []}, "no billing_document_id"),
    ],
)
def test_a_bad_value_names_its_key(record: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRecordError) as raised:
        billing_statements(record, "b.json", {})
    assert message in f"{raised.type.__name__}: {raised.value}"


@pytest.mark.parametrize(
    ("raw", "text", "number"),
    [(" 12 ", "12", 12), ("12.0", "12.0", 12), (7, "7", 7), ("", None, None), (None, None, None), ("  ", None, None)],
)
def test_parse_text_and_int(raw: Any, text: str | None, number: int | None) -> None:
    assert (parse_text(raw), parse_int(raw)) == (text, number)


@pytest.mark.parametrize("raw", ["ten", "1e999", "nan"])
def test_parse_int_refuses_what_is_not_a_whole_number(raw: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        parse_int(raw)
