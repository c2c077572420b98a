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
