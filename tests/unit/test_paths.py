from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from storeflow.crm.files import canonical_name
from storeflow.hallmark.records import record_path
from storeflow.paths import UnsafePathError, inside, safe_component, safe_extension, shown


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("3076428648", True),
        ("1000055874", True),
        ("a668", True),
        ("UC567", True),
        ("store-9_b", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        (".", False),
        ("..", False),
        ("../../..", False),
        ("a/b", False),
        ("a\\b", False),
        ("/etc", False),
        ("-rf", False),
        ("a.b", False),
        ("a b", False),
        ("a\x00b", False),
        ("ü1", False),
        ("1\n", False),
    ],
)
def test_safe_component(value: str, ok: bool) -> None:
    if ok:
        assert safe_component("orderId", value) == value
    else:
        with pytest.raises(UnsafePathError, match=r"^orderId .* cannot be used in a file name"):
            safe_component("orderId", value)


@pytest.mark.parametrize(
    ("value", "ext"),
    [("xlsx", "xlsx"), (".XLSX", "xlsx"), ("xls", "xls"), ("csv", "csv"), ("json", "json"),
     ("bin", None), ("html", None), ("exe", None), ("xlsx/../../x", None), ("", None), ("xlsx.sh", None)],
)  # fmt: skip
def test_safe_extension(value: str, ext: str | None) -> None:
    if ext:
        assert safe_extension(value) == ext
    else:
        with pytest.raises(UnsafePathError, match="is not one of xlsx, xls, csv, json"):
            safe_extension(value)


@pytest.mark.parametrize(
    ("path", "ok"),
    [("/out/2025/01/store_9/order_1.json", True), ("/out/a/../b.json", True), ("/out", False),
     ("/out/../etc/passwd", False), ("/outside/x.json", False), ("/out/a/../../x.json", False)],
)  # fmt: skip
def test_inside(path: str, ok: bool) -> None:
    if ok:
        assert inside(Path("/out"), Path(path)) == Path(path)
    else:
        with pytest.raises(UnsafePathError, match="is outside '/out'"):
            inside(Path("/out"), Path(path))


def test_shown_values_are_redacted_and_cut() -> None:
    assert shown("password=hunter22") == "'password=***'"
    assert shown("a" * 100) == repr("a" * 37 + "...")


@pytest.mark.parametrize(
    ("record_id", "record", "stores", "field"),
    [
        ("1", {"customer_id": "../../..", "order_creation_date": "09/01/2025"}, {}, "customerId"),
        ("1", {"customer_id": "/../../../../x"}, {}, "customerId"),
        ("1", {"customer_id": "5"}, {"5": "../9"}, "store number"),
        ("../../../sessions/s", {"customer_id": "5"}, {}, "orderId"),
        ("1/..", {"customer_id": "5"}, {}, "orderId"),
    ],
)
def test_record_path_refuses_unsafe_portal_values(
    record_id: str, record: dict[str, Any], stores: dict[str, str], field: str
) -> None:
    with pytest.raises(UnsafePathError, match=f"^{field} "):
        record_path(Path("/out"), "order", record_id, record, stores)


@pytest.mark.parametrize(
    ("store", "ext", "message"),
    [("Uttam Nagar", "sh", "not one of"), ("Uttam Nagar", "xlsx/../../evil", "not one of"),
     (",,,", "xlsx", "store name")],
)  # fmt: skip
def test_canonical_name_refuses_unsafe_parts(store: str, ext: str, message: str) -> None:
    with pytest.raises(UnsafePathError, match=message):
        canonical_name("td", "OrderReport", store, date(2025, 11, 12), date(2025, 11, 13), ext)
