"""The webhook verifier against Shopify's published vector, and a sender that signs on its own (no I/O)."""

from __future__ import annotations

from storeflow.esl.transform import sign_body, verify_hmac
from storeflow.sandbox.shopify import sign_webhook

# Shopify's published vector (the @shopify/shopify-api webhook validation tests): the body has a
# space after the colon and no trailing newline
VECTOR_SECRET = "test_secret_key"
VECTOR_BODY = b'{"foo": "bar"}'
VECTOR_HMAC = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="


def test_the_verifier_passes_shopifys_published_vector() -> None:
    assert verify_hmac(VECTOR_SECRET, VECTOR_BODY, VECTOR_HMAC)
    assert sign_body(VECTOR_SECRET, VECTOR_BODY) == VECTOR_HMAC
    assert not verify_hmac(VECTOR_SECRET, b'{"foo":"bar"}', VECTOR_HMAC)  # other bytes, same JSON
    assert not verify_hmac(VECTOR_SECRET, VECTOR_BODY + b"\n", VECTOR_HMAC)
    assert not verify_hmac("test_secret_kez", VECTOR_BODY, VECTOR_HMAC)


def test_the_sender_signs_with_its_own_code_and_matches_the_vector() -> None:
    from storeflow.sandbox import shopify

    assert sign_webhook(VECTOR_SECRET, VECTOR_BODY) == VECTOR_HMAC
    borrowed = [name for name, v in vars(shopify).items() if str(getattr(v, "__module__", "")).startswith("storeflow.")]
    assert all(getattr(shopify, name).__module__ == "storeflow.sandbox.shopify" for name in borrowed), borrowed
    assert shopify.TOPICS == ("products/create", "products/update", "products/delete", "inventory_levels/update")
