"""Salesforce Aura request builder and response parser (pure: no I/O, no clock).

Shapes follow `portal-facts.md`: one ApexAction per POST to
``/s/sfsites/aura?r={counter}&aura.ApexAction.execute=1``, nested filter
arguments as JSON *strings*, responses possibly prefixed ``while(1);`` or
wrapped ``*/ ... /*ERROR*/``, a returnValue sometimes wrapped twice, framework
events for an outdated fwuid or an expired session, and an empty body for a
bad token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

AURA_PATH = "/s/sfsites/aura"
APP = "siteforce:communityApp"
TOKEN_KEY = "$AuraClientService.token$siteforce:communityApp"
CLIENT_OUT_OF_SYNC = "markup://aura:clientOutOfSync"
INVALID_SESSION = "markup://aura:invalidSession"

Kind = Literal["search", "detail"]


class AuraError(Exception):
    """Base of every Aura failure."""


class BadTokenError(AuraError):
    """HTTP 200 with an empty body: the aura.token was empty or wrong."""


class InvalidSessionError(AuraError):
    """``aura:invalidSession``, a 401 or a redirect to the login page: log in again."""


class ClientOutOfSyncError(AuraError):
    """``aura:clientOutOfSync``: the fwuid changed (a Salesforce release)."""

    def __init__(self, message: str, expected: str | None) -> None:
        super().__init__(message)
        self.expected = expected


class ActionError(AuraError):
    """The action ran and answered ``state: ERROR`` (e.g. an unknown order id): not retried."""


class MalformedResponseError(AuraError):
    """Not parseable as an Aura response (truncated body, HTML page ...): transient."""


@dataclass(frozen=True)
class AuraAction:
    """One Apex action call: ``classname.method(params)`` as seen from ``page_uri``."""

    classname: str
    method: str
    params: dict[str, Any]
    page_uri: str
    kind: Kind

    @property
    def name(self) -> str:
        return f"{self.classname}.{self.method}"


def order_detail(order_id: str) -> AuraAction:
    return AuraAction(
        "Portal_OrderDetailController",
        "getOrderDetailSAPSearchResult",
        {
            "orderId": str(order_id),
            "pageSize": -1,
            "pageNumber": -1,
            "searchSort": json.dumps({"fieldName": "lineItemNumber", "sortDirection": "asc"}),
            "cacheable": False,
            "isContinuation": False,
        },
        f"/s/orderdetail?orderId={quote(str(order_id))}",
        "detail",
    )


def billing_detail(billing_id: str) -> AuraAction:
    return AuraAction(
        "Portal_BillingDocumentDetailController",
        "getBillingDocumentDetailSAPSearchResult",
        {"invoiceId": str(billing_id)},
        f"/s/billingdocumentdetail?billingDocumentId={quote(str(billing_id))}",
        "detail",
    )


def delivery_detail(delivery_id: str) -> AuraAction:
    return AuraAction(
        "Portal_DeliveryDetailController",
        "getDeliveryDetailSAPSearchResult",
        {"deliveryId": str(delivery_id)},
        f"/s/deliverydetail?deliveryId={quote(str(delivery_id))}",
        "detail",
    )


def order_search(customer_ids: list[str], start: str, end: str, page: int, page_size: int = 50) -> AuraAction:
    """Orders created between ``start`` and ``end`` (YYYY-MM-DD) for the given customers."""
    filters = {
        "customerIds": ",".join(customer_ids),
        "customerSearchType": "combobox",
        "orderCreationStartDate": start,
        "orderCreationEndDate": end,
    }
    return AuraAction(
        "Portal_OrderController",
        "getOrderSAPSearchResult",
        {
            "pageSize": page_size,
            "pageNumber": page,
            "searchType": "Orders",
            "searchFilters": json.dumps(filters),
            "searchSort": json.dumps({"fieldName": "orderCreationDate", "sortDirection": "desc"}),
        },
        "/s/orders",
        "search",
    )


def billing_search(
    customer_ids: list[str], start: str, end: str, page: int, status: str = "All", page_size: int = 50
) -> AuraAction:
    filters = {
        "customerIds": ",".join(customer_ids),
        "customerSearchType": "combobox",
        "billingDocumentStartDate": start,
        "billingDocumentEndDate": end,
        "billingStatus": status,
    }
    return AuraAction(
        "Portal_BillingDocumentsController",
        "getBillingDocumentsSAPSearchResult",
        {
            "pageSize": page_size,
            "pageNumber": page,
            "searchType": "Invoices",
            "searchFilters": json.dumps(filters),
            "searchSort": json.dumps({"fieldName": "billingDocumentDate", "sortDirection": "desc"}),
        },
        "/s/billingdocuments",
        "search",
    )


@dataclass(frozen=True)
class AuraRequest:
    path: str
    query: dict[str, str]
    form: dict[str, str]


def build_request(
    action: AuraAction, counter: int, fwuid: str, token: str, loaded: dict[str, str] | None = None
) -> AuraRequest:
    """The POST for one action: query ``r={counter}&aura.ApexAction.execute=1`` and the four form fields."""
    message = {
        "actions": [
            {
                "id": f"{counter};a",
                "descriptor": "aura://ApexActionController/ACTION$execute",
                "callingDescriptor": "UNKNOWN",
                "params": {
                    "namespace": "",
                    "classname": action.classname,
                    "method": action.method,
                    "params": action.params,
                    "cacheable": False,
                    "isContinuation": False,
                },
            }
        ]
    }
    context = {
        "mode": "PROD",
        "fwuid": fwuid,
        "app": APP,
        "loaded": loaded or {},
        "dn": [],
        "globals": {},
        "uad": True,
    }
    return AuraRequest(
        AURA_PATH,
        {"r": str(counter), "aura.ApexAction.execute": "1"},
        {
            "message": json.dumps(message, separators=(",", ":")),
            "aura.context": json.dumps(context, separators=(",", ":")),
            "aura.pageURI": action.page_uri,
            "aura.token": token,
        },
    )


_FWUID = (
    re.compile(r'"fwuid"\s*:\s*"([^"]+)"'),
    re.compile(r"%22fwuid%22%3A%22([^%\"]+)%22"),
    re.compile(r"\\\"fwuid\\\"\s*:\s*\\\"([^\\\"]+)\\\""),
)
_TOKEN_IN_PAGE = re.compile(r"\$AuraClientService\.token\$siteforce:communityApp['\"]\s*,\s*['\"]([^'\"]+)['\"]")
_EXPECTED = re.compile(r"Expected:\s*(\S+)")


def find_fwuid(page: str) -> str | None:
    """The framework uid from the community page's bootstrap script (plain or URL-encoded)."""
    for pattern in _FWUID:
        found = pattern.search(page)
        if found:
            return found.group(1)
    return None


def find_token_in_page(page: str) -> str | None:
    found = _TOKEN_IN_PAGE.search(page)
    return found.group(1) if found else None


def strip_wrappers(body: str) -> str:
    """Remove the ``while(1);`` guard and the ``*/ ... /*ERROR*/`` exception wrapper."""
    text = body.strip()
    if text.startswith("while(1);"):
        text = text[len("while(1);") :].strip()
    if text.startswith("*/"):
        text = text[2:]
        if text.rstrip().endswith("/*ERROR*/"):
            text = text.rstrip()[: -len("/*ERROR*/")]
        text = text.strip()
    return text


def _event_descriptor(payload: Any) -> tuple[str, str] | None:
    """(descriptor, message) of a framework event anywhere at the top or in an action's error list."""
    candidates: list[Any] = []
    if isinstance(payload, dict):
        candidates.append(payload.get("event"))
        for action in payload.get("actions") or []:
            if isinstance(action, dict):
                for err in action.get("error") or []:
                    if isinstance(err, dict):
                        candidates.append(err.get("event"))
    for event in candidates:
        if isinstance(event, dict) and isinstance(event.get("descriptor"), str):
            values = (event.get("attributes") or {}).get("values") or {}
            message = values.get("message") or payload.get("message") or ""
            return event["descriptor"], str(message)
    return None


@dataclass
class AuraResult:
    value: Any
    raw: dict[str, Any] = field(default_factory=dict)


def parse_response(body: str) -> AuraResult:
    """The action's returnValue (unwrapped once more if double-wrapped), or the matching `AuraError`."""
    if not body.strip():
        raise BadTokenError("empty response body: the Aura token is missing or invalid")
    text = strip_wrappers(body)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        snippet = text[:80].replace("\n", " ")
        raise MalformedResponseError(f"response is not JSON ({exc.msg}): {snippet!r}") from exc
    if not isinstance(payload, dict):
        raise MalformedResponseError(f"response is a {type(payload).__name__}, not an object")
    event = _event_descriptor(payload)
    if event is not None:
        descriptor, message = event
        if descriptor == CLIENT_OUT_OF_SYNC:
            found = _EXPECTED.search(message)
            raise ClientOutOfSyncError(message or "framework updated", found.group(1) if found else None)
        if descriptor == INVALID_SESSION:
            raise InvalidSessionError("aura:invalidSession: the session has expired")
        raise ActionError(f"framework event {descriptor}: {message}")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        if payload.get("exceptionEvent") or payload.get("exceptionMessage"):
            raise ActionError(str(payload.get("exceptionMessage") or "exception event"))
        raise MalformedResponseError("response has no actions")
    action = actions[0]
    state = action.get("state")
    if state != "SUCCESS":
        errors = action.get("error") or []
        messages = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
        raise ActionError(f"action state {state}: {'; '.join(messages) or 'no message'}")
    value = action.get("returnValue")
    if isinstance(value, dict) and "returnValue" in value and set(value) <= {"returnValue", "cacheable"}:
        value = value["returnValue"]
    return AuraResult(value, payload)


def search_page(value: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Rows and totalRecords of a search returnValue (``result`` is an object when there is one row)."""
    if not isinstance(value, dict):
        raise MalformedResponseError("search returnValue is not an object")
    result = value.get("result")
    if result is None:
        rows: list[dict[str, Any]] = []
    elif isinstance(result, dict):
        rows = [result]
    elif isinstance(result, list):
        rows = [r for r in result if isinstance(r, dict)]
    else:
        raise MalformedResponseError("search result is neither a list nor an object")
    total = value.get("totalRecords")
    try:
        total_int = int(total) if total is not None else None
    except (TypeError, ValueError):
        total_int = None
    return rows, total_int
