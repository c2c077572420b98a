"""Facts written once: the Hipoink default sign, the webhook paths (from the ESL topics)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "storeflow"


def test_the_hipoink_default_sign_is_written_once() -> None:
    from storeflow.esl.hipoink import DEFAULT_SIGN
    from storeflow.settings import HIPOINK_DEFAULT_SIGN, Settings

    places = [
        path.relative_to(SRC).as_posix()
        for path in sorted(SRC.rglob("*.py"))
        if HIPOINK_DEFAULT_SIGN in path.read_text(encoding="utf-8")
    ]
    assert places == ["settings.py"]
    assert (
        DEFAULT_SIGN == HIPOINK_DEFAULT_SIGN == Settings.model_fields["HIPOINK_API_SECRET"].default.get_secret_value()
    )


def test_every_webhook_topic_has_its_path() -> None:
    from storeflow.esl.api import WEBHOOK_PATHS

    assert WEBHOOK_PATHS == {
        "/webhooks/shopify/products/create": "products/create",
        "/webhooks/shopify/products/update": "products/update",
        "/webhooks/shopify/products/delete": "products/delete",
        "/webhooks/shopify/inventory_levels/update": "inventory_levels/update",
        "/webhooks/shopify": None,
    }
