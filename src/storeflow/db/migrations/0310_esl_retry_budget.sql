-- Issue 11: the retry budget of a queue item.
-- `attempts` keeps counting claims (the sync_log attempt number). MAX_RETRY_ATTEMPTS bounds only
-- `answered_errors`, the retryable errors Hipoink actually answered (500, 502, a garbled 2xx);
-- every transient failure (timeouts, connection errors, 503/504, 429, lease expiry) is bounded by
-- the time since `retrying_since`, the first failure of the item (ESL_RETRY_WINDOW_SECONDS).
ALTER TABLE sync_queue ADD COLUMN IF NOT EXISTS answered_errors integer NOT NULL DEFAULT 0;
ALTER TABLE sync_queue ADD COLUMN IF NOT EXISTS retrying_since timestamptz;
