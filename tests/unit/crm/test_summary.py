from __future__ import annotations

import uuid

import pytest

from storeflow.crm.portals import cookie_header, jwt_expiry, local_storage_token
from storeflow.crm.runner import RunSummary, StoreOutcome
from storeflow.sandbox.tumbledry.common import make_jwt


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["ok", "ok"], 0),
        (["ok", "duplicate", "empty"], 0),
        (["ok", "failed"], 1),
        (["ok", "needs_bootstrap"], 3),
        (["failed", "needs_bootstrap"], 3),
        (["ok", "skipped"], 6),
        (["skipped", "failed"], 1),
        (["skipped", "needs_bootstrap"], 3),
    ],
)
def test_exit_code(statuses: list[str], code: int) -> None:
    summary = RunSummary(uuid.uuid4(), [StoreOutcome(f"s{i}", s) for i, s in enumerate(statuses)])
    assert summary.exit_code == code


def test_storage_state_helpers() -> None:
    token = make_jwt({"id": 1, "iat": 100, "exp": 200}, b"k")
    state = {
        "cookies": [
            {"name": "ASP.NET_SessionId", "value": "abc", "domain": "127.0.0.1"},
            {"name": "other", "value": "x", "domain": "example.org"},
        ],
        "origins": [
            {"origin": "http://127.0.0.1:9000", "localStorage": [{"name": "token", "value": f"Bearer {token}"}]}
        ],
    }
    assert cookie_header(state, "http://127.0.0.1:9000/a668/App/home") == "ASP.NET_SessionId=abc"
    assert local_storage_token(state, "http://127.0.0.1:9000") == token
    assert local_storage_token(state, "http://127.0.0.1:9001") is None
    assert jwt_expiry(token) == 200.0
