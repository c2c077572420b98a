from __future__ import annotations

import json
from typing import Any

import pytest

from storeflow.hallmark import aura


def _success(value: Any) -> str:
    return json.dumps({"actions": [{"id": "1;a", "state": "SUCCESS", "returnValue": value}], "context": {}})


ORDER = {"orderHeader": {"customerId": "1"}, "orderLines": []}
OUT_OF_SYNC = {
    "event": {
        "descriptor": "markup://aura:clientOutOfSync",
        "attributes": {"values": {"message": "Framework has been updated. Expected: NEW1 Actual: OLD1"}},
    },
    "exceptionEvent": True,
}
INVALID = {"event": {"descriptor": "markup://aura:invalidSession", "attributes": {"values": {}}}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_success(ORDER), ORDER),
        ("while(1);\n" + _success(ORDER), ORDER),
        (_success({"returnValue": ORDER, "cacheable": False}), ORDER),
        ("while(1);" + _success({"returnValue": ORDER, "cacheable": False}), ORDER),
        (_success({"result": [], "totalRecords": 0}), {"result": [], "totalRecords": 0}),
        (_success({"returnValue": 1, "other": 2}), {"returnValue": 1, "other": 2}),
    ],
)
def test_parse_success_variants(body: str, expected: Any) -> None:
    assert aura.parse_response(body).value == expected


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        ("", aura.BadTokenError, "empty"),
        ("   \n", aura.BadTokenError, "empty"),
        (f"*/{json.dumps(OUT_OF_SYNC)}/*ERROR*/", aura.ClientOutOfSyncError, "Framework has been updated"),
        (f"*/{json.dumps(INVALID)}/*ERROR*/", aura.InvalidSessionError, "invalidSession"),
        (json.dumps(INVALID), aura.InvalidSessionError, "invalidSession"),
        (
            json.dumps({"actions": [{"state": "ERROR", "error": [{"message": "No order found"}]}]}),
            aura.ActionError,
            "No order found",
        ),
        (
            json.dumps({"actions": [{"state": "ERROR", "error": [{"event": INVALID["event"]}]}]}),
            aura.InvalidSessionError,
            "expired",
        ),
        ('{"actions": [{"state": "SUCC', aura.MalformedResponseError, "not JSON"),
        ("<html>login</html>", aura.MalformedResponseError, "not JSON"),
        ("[1, 2]", aura.MalformedResponseError, "list"),
        ("{}", aura.MalformedResponseError, "no actions"),
    ],
)
def test_parse_failure_variants(body: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        aura.parse_response(body)


def test_out_of_sync_carries_the_expected_fwuid() -> None:
    with pytest.raises(aura.ClientOutOfSyncError) as caught:
        aura.parse_response(f"*/{json.dumps(OUT_OF_SYNC)}/*ERROR*/")
    assert caught.value.expected == "NEW1"


@pytest.mark.parametrize(
    ("page", "fwuid"),
    [
        ('<script>window.Aura.initConfig = {"context":{"mode":"PROD","fwuid":"abc-123_X"}}</script>', "abc-123_X"),
        ("/s/sfsites/l/%7B%22mode%22%3A%22PROD%22%2C%22fwuid%22%3A%22Zm9v%22%7D/app.css", "Zm9v"),
        ('"fwuid" : "spaced"', "spaced"),
        ("<html>no bootstrap</html>", None),
    ],
)
def test_find_fwuid(page: str, fwuid: str | None) -> None:
    assert aura.find_fwuid(page) == fwuid


def test_request_builder_counter_context_and_json_string_filters() -> None:
    action = aura.order_search(["100", "200"], "2025-01-01", "2025-01-31", page=2)
    request = aura.build_request(action, counter=7, fwuid="FW", token="TOK")
    assert request.path == "/s/sfsites/aura"
    assert request.query == {"r": "7", "aura.ApexAction.execute": "1"}
    assert request.form["aura.token"] == "TOK" and request.form["aura.pageURI"] == "/s/orders"
    context = json.loads(request.form["aura.context"])
    assert (context["fwuid"], context["app"], context["mode"]) == ("FW", "siteforce:communityApp", "PROD")
    message = json.loads(request.form["message"])
    act = message["actions"][0]
    assert act["id"] == "7;a" and act["descriptor"] == "aura://ApexActionController/ACTION$execute"
    params = act["params"]
    assert (params["classname"], params["method"]) == ("Portal_OrderController", "getOrderSAPSearchResult")
    inner = params["params"]
    assert (inner["pageSize"], inner["pageNumber"], inner["searchType"]) == (50, 2, "Orders")
    assert isinstance(inner["searchFilters"], str)
    assert json.loads(inner["searchFilters"]) == {
        "customerIds": "100,200",
        "customerSearchType": "combobox",
        "orderCreationStartDate": "2025-01-01",
        "orderCreationEndDate": "2025-01-31",
    }


@pytest.mark.parametrize(
    ("action", "classname", "page_uri", "kind", "key"),
    [
        (aura.order_detail("3076428648"), "Portal_OrderDetailController", "/s/orderdetail?orderId=3076428648",
         "detail", "orderId"),
        (aura.billing_detail("5055177281"), "Portal_BillingDocumentDetailController",
         "/s/billingdocumentdetail?billingDocumentId=5055177281", "detail", "invoiceId"),
        (aura.delivery_detail("8001"), "Portal_DeliveryDetailController", "/s/deliverydetail?deliveryId=8001",
         "detail", "deliveryId"),
        (aura.billing_search(["1"], "2025-01-01", "2025-01-31", 1), "Portal_BillingDocumentsController",
         "/s/billingdocuments", "search", "searchFilters"),
    ],
)  # fmt: skip
def test_action_shapes(action: aura.AuraAction, classname: str, page_uri: str, kind: str, key: str) -> None:
    assert (action.classname, action.page_uri, action.kind) == (classname, page_uri, kind)
    assert key in action.params


def test_order_detail_params_per_facts() -> None:
    params = aura.order_detail("1").params
    assert (params["pageSize"], params["pageNumber"], params["cacheable"], params["isContinuation"]) == (
        -1, -1, False, False,
    )  # fmt: skip
    assert isinstance(params["searchSort"], str)


@pytest.mark.parametrize(
    ("value", "rows", "total"),
    [
        ({"result": [{"orderId": "1"}, {"orderId": "2"}], "totalRecords": 2}, 2, 2),
        ({"result": {"orderId": "1"}, "totalRecords": "1"}, 1, 1),
        ({"result": None}, 0, None),
        ({"result": [], "totalRecords": "x"}, 0, None),
    ],
)
def test_search_page_list_or_object(value: Any, rows: int, total: int | None) -> None:
    found, count = aura.search_page(value)
    assert (len(found), count) == (rows, total)


def test_search_page_rejects_other_shapes() -> None:
    with pytest.raises(aura.MalformedResponseError):
        aura.search_page({"result": "text"})


# ---- the vocabulary of real Salesforce sites (sources in docs/hallmark.md, "What real Aura sites say")

_ILLEGAL = (
    "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session. Session not found, "
    "missing session hash: l5Z7= This error usually occurs after a session expires or a user logs out."
)
_EVENT_WITH_ERROR = {
    "descriptor": "markup://aura:invalidSession",
    "attributes": {"values": {"error": {"message": "session"}}},
}
_DEFAULT_HANDLER = '"defaultHandler":function(){try{$A.clientService.setOutdated()}catch(e){}}'
SESSION_EXPIRED_FORMS = {
    "Aura's own answer: CSRF guard, ERROR wrapper, newToken": 'while(1);\n*/{"exceptionEvent":true,"event":'
    '{"descriptor":"markup://aura:invalidSession","attributes":{"values":{"newToken":null}}}}/*ERROR*/',
    "bare event name": json.dumps({"exceptionEvent": True, "event": {"descriptor": "aura:invalidSession"}}),
    "event with an exception message": json.dumps(
        {"event": {"descriptor": "markup://aura:invalidSession"}, "exceptionMessage": "Expected 3 tokens in all"}
    ),
    "fault code in the action's errors": json.dumps(
        {"actions": [{"state": "ERROR", "error": [{"message": "INVALID_SESSION_ID"}]}]}
    ),
    "SOAP prose in the action's errors": json.dumps(
        {"actions": [{"id": "7;a", "state": "ERROR", "returnValue": None, "error": [{"message": _ILLEGAL}]}]}
    ),
    "jsforce prose, Apex exception type": json.dumps(
        {
            "actions": [
                {"state": "ERROR", "error": [{"exceptionType": "Exception", "message": "Session expired or invalid"}]}
            ]
        }
    ),
    "event inside the error list, message in values.error": json.dumps(
        {"actions": [{"state": "ERROR", "error": [{"event": _EVENT_WITH_ERROR}]}]}
    ),
    "exception message: the request now runs as the guest user": "*/"
    + json.dumps({"exceptionEvent": True, "exceptionMessage": "Guest user access is not allowed"})
    + "/*ERROR*/",
    "JavaScript in the answer (not JSON)": "*/{"
    + _DEFAULT_HANDLER
    + ',"event":{"descriptor":"markup://aura:invalidSession"},"exceptionEvent":true}/*ERROR*/',
    "a page bouncing to the login": "<html><head><script>window.location.href ='https://portal.test/s/login"
    "?ec=302&startURL=%2Fs%2F';</script></head></html>",
    "refused CSRF token, not JSON": "<html><body>invalid_csrf</body></html>",
}


@pytest.mark.parametrize("body", SESSION_EXPIRED_FORMS.values(), ids=SESSION_EXPIRED_FORMS.keys())
def test_every_form_of_an_expired_session_is_invalid_session(body: str) -> None:
    with pytest.raises(aura.InvalidSessionError, match="session has expired"):
        aura.parse_response(body)


def _oos(values: dict[str, Any] | None = None, **top: Any) -> str:
    event: dict[str, Any] = {"descriptor": "markup://aura:clientOutOfSync"}
    if values is not None:
        event["attributes"] = {"values": values}
    return "*/" + json.dumps({"event": event, "exceptionEvent": True, **top}) + "/*ERROR*/"


OUT_OF_SYNC_FORMS = {
    "message in the event's values": (_oos({"message": "Framework has been updated. Expected: NEW1 Actual: OLD1"}),
                                      "NEW1"),
    "bare event name": (json.dumps({"event": {"descriptor": "aura:clientOutOfSync", "attributes": {"values": {
        "message": "Framework has been updated. Expected: NEW2 Actual: OLD1"}}}}), "NEW2"),
    "message as the exception message": (_oos(exceptionMessage="Framework has been updated. Expected: NEW3 Actual: X"),
                                         "NEW3"),
    "no space after the colon": (_oos({"message": "Framework has been updated. Expected:NEW4 Actual: X"}), "NEW4"),
    "no message, the server's context": (_oos(context={"mode": "PROD", "fwuid": "NEW5"}), "NEW5"),
    "no message, no context": (_oos(), None),
    "JavaScript in the answer (not JSON)": ("while(1);\n*/{" + _DEFAULT_HANDLER + ',"event":{"descriptor":'
        '"markup://aura:clientOutOfSync"},"exceptionMessage":"Framework has been updated. Expected: NEW6 '
        'Actual: X","exceptionEvent":true}/*ERROR*/', "NEW6"),
    "action WARNING: page changed since the last refresh": (json.dumps({
        "actions": [{"id": "1;a", "state": "WARNING", "error": [{"message": "This page has changes since the last "
                     "refresh. To get the latest updates, save your work and finish your conversations before "
                     "refreshing the page."}]}],
        "context": {"fwuid": "NEW7"}}), "NEW7"),
    "in the action's error list": (json.dumps({"actions": [{"state": "ERROR", "error": [{"event": {
        "descriptor": "markup://aura:clientOutOfSync", "attributes": {"values": {
            "message": "Framework has been updated. Expected: NEW8 Actual: X"}}}}]}]}), "NEW8"),
}  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), OUT_OF_SYNC_FORMS.values(), ids=OUT_OF_SYNC_FORMS.keys())
def test_every_form_of_a_framework_update_names_the_fwuid_when_it_can(body: str, expected: str | None) -> None:
    with pytest.raises(aura.ClientOutOfSyncError) as caught:
        aura.parse_response(body)
    assert caught.value.expected == expected


@pytest.mark.parametrize(
    ("body", "value", "has_action"),
    [
        (json.dumps({"actions": [], "context": {"fwuid": "F"}}), None, False),
        (json.dumps({"events": [{"descriptor": "markup://aura:clientRedirect", "attributes": {"values": {
            "url": "https://portal.test/secur/frontdoor.jsp"}}}], "context": {}}), None, False),
        (json.dumps({"actions": [{"id": "1;a", "state": "SUCCESS"}]}), None, True),  # an Apex method returning void
        ("for(;;);" + _success({"ok": 1}), {"ok": 1}, True),
        # data that happens to contain the words is data, not a signal
        (_success({"comment": "INVALID_SESSION_ID, Framework has been updated"}),
         {"comment": "INVALID_SESSION_ID, Framework has been updated"}, True),
    ],
)  # fmt: skip
def test_successful_answers_with_and_without_an_action(body: str, value: Any, has_action: bool) -> None:
    result = aura.parse_response(body)
    assert (result.value, result.has_action) == (value, has_action)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (json.dumps({"actions": [{"state": "INCOMPLETE"}]}), aura.MalformedResponseError),
        (json.dumps({"exceptionEvent": True, "event": {"descriptor": "markup://aura:noAccess"}}), aura.ActionError),
        (json.dumps({"actions": [{"state": "ERROR", "error": [{"message": "Script-thrown exception"}]}]}),
         aura.ActionError),
    ],
)  # fmt: skip
def test_other_failures_keep_their_meaning(body: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        aura.parse_response(body)
