-- Dashboard alert engine: one row per alert condition (de-duplication and "resolved" state),
-- and a log of every alert message delivered or attempted.

CREATE TABLE IF NOT EXISTS dashboard_alert_state (
    condition_key  text PRIMARY KEY,
    kind           text NOT NULL,
    store          text,
    active         boolean NOT NULL,
    summary        text NOT NULL DEFAULT '',
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_sent_at   timestamptz,
    resolved_at    timestamptz
);

CREATE TABLE IF NOT EXISTS dashboard_alert_log (
    id             bigserial PRIMARY KEY,
    condition_key  text NOT NULL,
    action         text NOT NULL CHECK (action IN ('firing', 'reminder', 'resolved', 'test')),
    sent_at        timestamptz NOT NULL DEFAULT now(),
    payload        jsonb NOT NULL,
    outcome        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS dashboard_alert_log_sent ON dashboard_alert_log (sent_at DESC);
