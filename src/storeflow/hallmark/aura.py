"""Salesforce Aura request builder and response parser (pure: no I/O, no clock).

Shapes follow docs/hallmark.md ("How it works", "What real Aura sites say"): one ApexAction per POST to
``/s/sfsites/aura?r={counter}&aura.ApexAction.execute=1``, nested filter
arguments as JSON *strings*, responses possibly prefixed ``while(1);`` or
wrapped ``*/ ... /*ERROR*/``, a returnValue sometimes wrapped twice, framework
events for an outdated fwuid or an expired session, and an empty body for a
bad token. The other ways real sites say "session expired" or "framework
updated" (in an action's error list, in exception messages, in bodies that are
not JSON) are listed with their sources in docs/hallmark.md.
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
# "Framework has been updated. Expected: X Actual: Y" (also seen without the space after the colon)
_EXPECTED = re.compile(r"Expected:\s*([^\s\"']+)")
# Ways Salesforce words an expired or invalid session inside an action's error list or an exception:
# the SOAP/REST fault code, its prose, a request that now runs as the site's guest user, a refused CSRF token.
_SESSION_GONE = re.compile(
    r"INVALID_SESSION_ID|Invalid Session ID|Session expired or invalid|Illegal Session|"
    r"Guest user access is not allowed|invalid_csrf",
    re.IGNORECASE,
)
# a framework update worded in a message: the legacy event text, and the newer action WARNING text
_OUT_OF_SYNC = re.compile(r"Framework has been updated|has changes since the last refresh|clientOutOfSync", re.I)
# an HTML page (HTTP 200) that bounces the browser to the login page instead of answering
_LOGIN_BOUNCE = re.compile(
    r"""(?:window\.)?location(?:\.href)?\s*(?:=|\.replace\()\s*['"][^'"]*(?:/login|/secur/|startURL=)""",
    re.IGNORECASE,
)


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
    """Remove the ``while(1);`` / ``for(;;);`` guard and the ``*/ ... /*ERROR*/`` exception wrapper."""
    text = body.strip()
    for guard in ("while(1);", "for(;;);"):
        if text.startswith(guard):
            text = text[len(guard) :].strip()
    if text.startswith("*/"):
        text = text[2:]
        if text.rstrip().endswith("/*ERROR*/"):
            text = text.rstrip()[: -len("/*ERROR*/")]
        text = text.strip()
    return text


def _is(descriptor: str, event: str) -> bool:
    """``markup://aura:invalidSession`` and the bare ``aura:invalidSession`` name the same event."""
    return descriptor.removeprefix("markup://") == event.removeprefix("markup://")


def _messages(value: Any) -> list[str]:
    """Every message text of an error list or an event: ``message``, ``values.message``,
    ``values.error.message`` (the shapes Aura serialises exceptions in)."""
    found: list[str] = []
    if isinstance(value, list):
        for item in value:
            found += _messages(item)
    elif isinstance(value, dict):
        for key in ("message", "exceptionMessage"):
            if isinstance(value.get(key), str):
                found.append(value[key])
        values = (value.get("attributes") or {}).get("values") if isinstance(value.get("attributes"), dict) else None
        if isinstance(values, dict):
            found += _messages(values)
            found += _messages(values.get("error"))
        found += _messages(value.get("event"))
    return found


def _events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Framework events at the top, in ``events`` and inside each action's ``error`` list."""
    candidates: list[Any] = [payload.get("event"), *(payload.get("events") or [])]
    for action in payload.get("actions") or []:
        if isinstance(action, dict):
            for err in action.get("error") or []:
                if isinstance(err, dict):
                    candidates.append(err.get("event"))
    return [e for e in candidates if isinstance(e, dict) and isinstance(e.get("descriptor"), str)]


def _expected_fwuid(messages: list[str], payload: dict[str, Any] | None) -> str | None:
    for message in messages:
        found = _EXPECTED.search(message)
        if found:
            return found.group(1)
    context = (payload or {}).get("context")
    fwuid = context.get("fwuid") if isinstance(context, dict) else None
    return fwuid if isinstance(fwuid, str) and fwuid else None


def _out_of_sync(messages: list[str], payload: dict[str, Any] | None) -> ClientOutOfSyncError:
    message = next((m for m in messages if _OUT_OF_SYNC.search(m)), None) or next(iter(messages), None)
    return ClientOutOfSyncError(message or "framework updated", _expected_fwuid(messages, payload))


def _session_gone(where: str) -> InvalidSessionError:
    return InvalidSessionError(f"the session has expired ({where})")


def _classify_text(text: str) -> AuraError:
    """A body that is not JSON: Aura's own exception answers carry JavaScript (``defaultHandler``), an
    expired session may answer with a page that bounces to the login; anything else is transient."""
    if "aura:invalidSession" in text:
        return _session_gone("aura:invalidSession")
    if "aura:clientOutOfSync" in text or _OUT_OF_SYNC.search(text):
        found = _EXPECTED.search(text)
        return ClientOutOfSyncError("framework updated", found.group(1) if found else None)
    if _SESSION_GONE.search(text):
        return _session_gone(_SESSION_GONE.search(text).group(0))  # type: ignore[union-attr]
    if _LOGIN_BOUNCE.search(text):
        return _session_gone("the answer is a page redirecting to the login")
    snippet = text[:80].replace("\n", " ")
    return MalformedResponseError(f"response is not JSON: {snippet!r}")


def is_framework_event(body: str) -> bool:
    """Does the body carry Aura's session-expired or framework-updated event (whatever the HTTP status)?"""
    return "aura:invalidSession" in body or "aura:clientOutOfSync" in body


@dataclass
class AuraResult:
    value: Any
    raw: dict[str, Any] = field(default_factory=dict)
    # False for a successful answer that carries no action result (only events, or an empty list)
    has_action: bool = True


def parse_response(body: str) -> AuraResult:
    """The action's returnValue (unwrapped once more if double-wrapped), or the matching `AuraError`.

    Session expiry in any of its forms raises `InvalidSessionError`, a framework update
    `ClientOutOfSyncError` (with the fwuid the server expects when it says so); both come with HTTP 200.
    """
    if not body.strip():
        raise BadTokenError("empty response body: the Aura token is missing or invalid")
    text = strip_wrappers(body)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise _classify_text(text) from None
    if not isinstance(payload, dict):
        raise MalformedResponseError(f"response is a {type(payload).__name__}, not an object")
    top = _messages(payload)
    for event in _events(payload):
        if _is(event["descriptor"], INVALID_SESSION):
            raise _session_gone("aura:invalidSession")
        if _is(event["descriptor"], CLIENT_OUT_OF_SYNC):
            raise _out_of_sync(_messages(event) + top, payload)
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else None
    state = action.get("state") if action else None
    if state != "SUCCESS":  # only failures are read for wording: a successful returnValue is data
        wording = top + (_messages(action.get("error")) if action else [])
        gone = next((m for m in wording if _SESSION_GONE.search(m)), None)
        if gone is not None:
            raise _session_gone(gone[:120])
        if state == "WARNING" or any(_OUT_OF_SYNC.search(m) for m in wording):
            raise _out_of_sync(wording, payload)
    other = payload.get("event")
    if isinstance(other, dict) and (payload.get("exceptionEvent") or action is None):
        raise ActionError(f"framework event {other.get('descriptor')}: {'; '.join(top) or 'no message'}")
    if action is None:
        if payload.get("exceptionEvent") or payload.get("exceptionMessage"):
            raise ActionError(str(payload.get("exceptionMessage") or "exception event"))
        if isinstance(actions, list) or "events" in payload or "context" in payload:
            return AuraResult(None, payload, has_action=False)  # a success that answers with no action
        raise MalformedResponseError("response has no actions")
    if state == "INCOMPLETE":  # the server did not finish the action: worth another try
        raise MalformedResponseError("action state INCOMPLETE")
    if state != "SUCCESS":
        errors = _messages(action.get("error"))
        raise ActionError(f"action state {state}: {'; '.join(errors) or 'no message'}")
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
