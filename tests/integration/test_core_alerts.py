from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from storeflow.alerts import send_alert
from storeflow.settings import load_settings

pytestmark = pytest.mark.integration


def test_alert_is_posted_to_the_webhook_with_secrets_masked() -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = load_settings(env={"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/hook"})
        outcome = send_alert(settings, {"kind": "crm_failed", "store": "td_a668", "error": "password=abc123"})
    finally:
        server.shutdown()
        server.server_close()
    assert outcome == {"webhook": "sent"}
    assert received == [{"kind": "crm_failed", "store": "td_a668", "error": "password=***"}]


def test_unreachable_webhook_is_reported_not_raised() -> None:
    settings = load_settings(env={"ALERT_WEBHOOK_URL": "http://127.0.0.1:1/hook", "REQUEST_TIMEOUT_SECONDS": "2"})
    outcome = send_alert(settings, {"kind": "x"})
    assert outcome["webhook"].startswith("failed")
