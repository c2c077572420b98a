"""/metrics label values never come from what a webhook sender chooses (issue 10)."""

from __future__ import annotations

import pytest

from storeflow.dashboard.metrics import OTHER, reason_label


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("already received as inbox #", "already received as inbox #"),
        ("no active store mapping for shop evil.example", "no active store mapping for shop"),
        ("no active store mapping for shop {{\"}}<script>", "no active store mapping for shop"),
        ("unsupported topic 'orders/create'", "unsupported topic"),
        ("unsupported topic '\u00e9vil \u2603'", "unsupported topic"),
        ("malformed JSON: Expecting value: line # column #", "malformed JSON: Expecting value: line # column #"),
        ("malformed JSON: 'utf-#' codec can't decode byte #xff", "malformed JSON"),
        ("pp: price 'three' is not a decimal number", "pp: price"),
        ("available [[[[{}]]]] is not an integer", OTHER),
        ("topic mismatch: products/delete must carry only a product id; the body holds a product",
         "topic mismatch: products/delete must carry only a product id; the body holds a product"),
        ("older than the stored product # (updated_at # #)", "older than the stored product # (updated_at # #)"),
        ("x" * 121, OTHER),
        ("", OTHER),
        ("caf\u00e9", OTHER),
    ],
)  # fmt: skip
def test_reason_label(kind: str, label: str) -> None:
    assert reason_label(kind) == label
