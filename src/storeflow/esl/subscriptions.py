"""Shopify webhook subscriptions: exactly our four topics, pointing at our callback URLs.

Shopify deletes a subscription after 8 consecutive failed deliveries and tells nobody; `check`
notices, re-creates it, raises one alert and reconciles since the last webhook that arrived.
`plan_subscriptions` is the pure comparison; the rest talks to the `AdminClient` and records a
`webhook_subscription_checks` row per sync/check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from storeflow.esl import store
from storeflow.esl.admin import TOPICS, AdminClient

if TYPE_CHECKING:
    from storeflow.esl.reconcile_run import RunResult

# delivers an alert payload on the configured channels: {channel: "sent" | error} (storeflow.alerts.send_alert)
AlertSender = Callable[[dict[str, Any]], dict[str, str]]


def expected_subscriptions(callback_base_url: str) -> dict[str, str]:
    """topic enum -> the URL Shopify should deliver it to."""
    return {topic: f"{callback_base_url.rstrip('/')}{path}" for topic, path in TOPICS}


def topic_name(topic: str) -> str:
    """PRODUCTS_UPDATE -> products/update (the X-Shopify-Topic spelling)."""
    head, _, tail = topic.lower().rpartition("_")
    return f"{head}/{tail}"


@dataclass(frozen=True)
class Plan:
    present: tuple[dict[str, Any], ...]
    missing: tuple[str, ...]  # topics with no subscription to our URL
    stale: tuple[dict[str, Any], ...]  # our topics pointing elsewhere


def plan_subscriptions(expected: dict[str, str], actual: list[dict[str, Any]]) -> Plan:
    """Compare Shopify's subscriptions with the expected ones (other topics are left alone)."""
    present = [s for s in actual if expected.get(s["topic"]) == s.get("uri")]
    covered = {s["topic"] for s in present}
    missing = tuple(t for t in expected if t not in covered)
    stale = tuple(s for s in actual if s["topic"] in expected and s.get("uri") != expected[s["topic"]])
    return Plan(tuple(present), missing, stale)


@dataclass
class SyncResult:
    shop: str
    action: str
    expected: int = 0
    present: int = 0
    missing: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reconcile: dict[str, Any] | None = None
    alert: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sync_subscriptions(client: AdminClient, prune: bool = False, action: str = "sync") -> SyncResult:
    """Create what is missing ("already been taken" counts as present); with ``prune``, delete our
    topics' subscriptions that point elsewhere."""
    expected = expected_subscriptions(client.config.callback_base_url)
    plan = plan_subscriptions(expected, client.subscriptions())
    result = SyncResult(client.config.shop, action, len(expected), len(plan.present), list(plan.missing))
    for topic in plan.missing:
        made, errors = client.create_subscription(topic, expected[topic])
        if made:
            result.created.append(topic)
        elif any("already been taken" in str(e.get("message")) for e in errors):
            result.present += 1
        else:
            result.errors += [f"{topic}: {e.get('field')}: {e.get('message')}" for e in errors]
    if prune:
        for sub in plan.stale:
            errors = client.delete_subscription(sub["id"])
            if errors:
                result.errors += [f"delete {sub['id']}: {e.get('message')}" for e in errors]
            else:
                result.deleted.append(f"{sub['topic']} {sub.get('uri')}")
    return result


def record_check(conn: Any, result: SyncResult, run_id: int | None = None) -> None:
    store.record_subscription_check(
        conn,
        result.shop,
        result.action,
        result.expected,
        result.present,
        result.missing,
        result.created,
        result.deleted,
        run_id,
        "; ".join(result.errors) or None,
    )
    conn.commit()


def check_subscriptions(conn: Any, client: AdminClient, send_alert: AlertSender) -> SyncResult:
    """List, re-create what Shopify removed, alert once (through ``send_alert``) and reconcile since the
    last webhook."""
    from storeflow.esl.reconcile_run import last_webhook_at, reconcile_shop

    result = sync_subscriptions(client, prune=False, action="check")
    run: RunResult | None = None
    if result.missing:
        shop = client.config.shop
        last = last_webhook_at(conn, shop)
        since = last - timedelta(seconds=client.config.overlap_seconds) if last else None
        topics = ", ".join(topic_name(t) for t in result.missing)
        recreated = "re-created" if result.created == result.missing else f"re-created {len(result.created)}"
        message = (
            f"Shopify deleted the {topics} subscription{'s' if len(result.missing) > 1 else ''} of shop {shop}; "
            f"{recreated}; reconciling since {last.isoformat() if last else 'the last reconciliation'}"
        )
        result.alert = send_alert(
            {
                "kind": "shopify_subscription_removed",
                "title": f"Shopify webhook subscription removed ({shop})",
                "shop": shop,
                "topics": [topic_name(t) for t in result.missing],
                "message": message,
            },
        )
        run = reconcile_shop(conn, client, since=since, trigger="subscriptions-check")
        result.reconcile = run.as_dict()
    record_check(conn, result, run.run_id if run else None)
    return result
