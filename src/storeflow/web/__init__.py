"""The one ASGI app: ESL webhooks + API, dashboard, metrics."""
