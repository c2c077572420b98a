"""Record shapes: flattening Aura return values to snake_case, parsing portal money and dates,
and where each record's JSON file lives. Pure functions only.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from storeflow.paths import inside, safe_component

RecordKind = Literal["order", "billing"]
ID_FIELDS: dict[RecordKind, str] = {"order": "orderId", "billing": "billingDocumentNumber"}
_CAMEL_1 = re.compile(r"(.)([A-Z][a-z]+)")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")


def snake(name: str) -> str:
    """``orderCreationDate`` -> ``order_creation_date``; ``PONumber`` -> ``po_number``."""
    name = _CAMEL_1.sub(r"\1_\2", name.replace(" ", "_").replace("-", "_"))
    return _CAMEL_2.sub(r"\1_\2", name).lower().replace("__", "_")


def snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake(str(k)): snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


def split_ids(value: Any) -> list[str]:
    """``"8001, 8002"`` -> ``["8001", "8002"]`` (deliveryId / billingDocumentNumber are comma lists)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def flatten_order(order_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """Order detail returnValue -> ``{order_id, <header fields>, order_lines: [...]}``."""
    header = value.get("orderHeader") or {}
    if isinstance(header, list):
        header = header[0] if header else {}
    flat: dict[str, Any] = {"order_id": str(order_id)}
    flat.update(snake_keys(header))
    flat["order_id"] = str(order_id)
    flat["order_lines"] = [snake_keys(line) for line in _as_list(value.get("orderLines"))]
    return flat


def flatten_billing(billing_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """Billing detail returnValue -> ``{billing_document_id, <header>, billing_lines: [...]}``."""
    header = value.get("invoiceHeader") or {}
    if isinstance(header, list):
        header = header[0] if header else {}
    flat: dict[str, Any] = {"billing_document_id": str(billing_id)}
    flat.update(snake_keys(header))
    flat["billing_document_id"] = str(billing_id)
    flat["billing_lines"] = [snake_keys(line) for line in _as_list(value.get("invoiceDetails"))]
    return flat


def flatten_delivery(delivery_id: str, value: Any) -> dict[str, Any]:
    flat = snake_keys(value) if isinstance(value, dict) else {"value": value}
    header = flat.pop("delivery_header", None)
    if isinstance(header, dict):
        flat = {**header, **flat}
    flat["delivery_id"] = str(delivery_id)
    return flat


def parse_text(value: Any) -> str | None:
    """A portal value as stripped text; blank -> None."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_int(value: Any) -> int | None:
    """``12``, ``"12"``, ``"12.0"`` -> 12; blank -> None."""
    text = parse_text(value)
    if text is None:
        return None
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        raise ValueError(f"not a number: {value!r}") from None


_MONEY_JUNK = re.compile(r"[\s$,\u00a0]")


def parse_money(value: Any) -> Decimal | None:
    """``"$1,234.56 "`` -> ``Decimal("1234.56")``; ``"(12.50)"`` and ``"12.50-"`` are negative; blank -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    text = str(value).strip()
    if text and text[0].isdigit() and text[-1].isdigit() and "," not in text:
        try:  # the common case ("127.82 "): no symbols to strip
            fast = Decimal(text)
        except InvalidOperation:
            fast = None
        if fast is not None and fast.is_finite():
            return fast
    text = _MONEY_JUNK.sub("", text)
    if not text:
        return None
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1]
    if text.endswith("-"):
        negative, text = True, text[:-1]
    if text.startswith("-"):
        negative, text = not negative, text[1:]
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return -amount if negative else amount


def parse_count(value: Any) -> int | None:
    """A count the portal sends as integer or decimal text: ``12``, ``"12"``, ``"12.00 "``, ``"1,200"``.

    ``retailsin1Wholesale`` (retail units in one wholesale unit) is such a count; a fraction is refused.
    """
    if value is None or isinstance(value, bool):
        if value is None:
            return None
        raise ValueError(f"not a count: {value!r}")
    if isinstance(value, int):
        return value
    try:
        number = parse_money(value)
    except ValueError:
        raise ValueError(f"not a count: {value!r}") from None
    if number is None:
        return None
    if number != number.to_integral_value():
        raise ValueError(f"not a whole count: {value!r}")
    return int(number)


_DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%m/%d/%y", "%Y%m%d", "%m-%d-%Y")


def parse_date(value: Any) -> date | None:
    """Portal dates are ``MM/DD/YYYY``; ISO and a few variants are accepted; blank/zero -> None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text or set(text) <= set("0/-. "):
        return None
    text = text.split("T")[0].split(" ")[0]
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def record_date(kind: RecordKind, record: dict[str, Any]) -> date | None:
    if kind == "order":
        return parse_date(record.get("order_creation_date"))
    return parse_date(record.get("billing_document_date") or record.get("invoice_date"))


def record_customer(record: dict[str, Any]) -> str | None:
    value = record.get("customer_id") or record.get("customer_number")
    return str(value).strip() if value not in (None, "") else None


def file_name(kind: RecordKind, record_id: str) -> str:
    return f"{'order' if kind == 'order' else 'billing'}_{record_id}.json"


def record_path(
    root: Path, kind: RecordKind, record_id: str, record: dict[str, Any], store_numbers: dict[str, str]
) -> Path:
    """``{root}/{YYYY}/{MM}/store_{N}/order_{id}.json``; ``{root}/unknown-date/store_{N}/...`` without a date.

    N is the canonical store number for the record's customer id, else the customer id itself. Both the
    id and N come from the portal: a value that is not a safe path component raises UnsafePathError.
    """
    customer = record_customer(record) or "unknown"
    store = safe_component("store number" if customer in store_numbers else "customerId",
                           store_numbers.get(customer, customer))  # fmt: skip
    safe_component(ID_FIELDS[kind], record_id)
    when = record_date(kind, record)
    folder = root / f"{when:%Y}" / f"{when:%m}" if when else root / "unknown-date"
    return inside(root, folder / f"store_{store}" / file_name(kind, record_id))


_FILE = re.compile(r"^(order|billing)_(.+)\.json$")


def parse_file_name(name: str) -> tuple[RecordKind, str] | None:
    found = _FILE.match(name)
    if not found:
        return None
    kind: RecordKind = "order" if found.group(1) == "order" else "billing"
    return kind, found.group(2)


def normalise_id(value: Any) -> str:
    """One id type everywhere: a string of digits as the portal shows it (no float, no padding changes)."""
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text
