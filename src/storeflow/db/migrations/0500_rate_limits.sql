-- Issue 14: rate limits that hold across processes and machines (storeflow.http.quota, docs/esl.md).
-- One row per limited resource ('hipoink <base URL>', 'hipoink <base URL> store <code>',
-- 'hallmark <base URL> <username>'): when its last request slot was granted, on the database clock.
-- A process locks the row, takes a batch of slots after last_at and moves last_at on; nothing else
-- is kept per process, so a process that dies leaves nothing behind but slots that pass.
CREATE TABLE IF NOT EXISTS rate_limits (
    key         text PRIMARY KEY,
    last_at     double precision,                  -- epoch seconds of the last slot granted
    granted     bigint NOT NULL DEFAULT 0,         -- slots granted so far
    break_at    bigint,                            -- the slot count at which the next polite break falls
    not_before  double precision NOT NULL DEFAULT 0, -- Retry-After: no slot before this (epoch seconds)
    holder      text,                              -- the process that took the last grant
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A store whose labels live on a Hipoink account of their own: its own limit, not the server's shared one.
ALTER TABLE store_mappings ADD COLUMN IF NOT EXISTS hipoink_rate_limit_per_second double precision
    CHECK (hipoink_rate_limit_per_second IS NULL OR hipoink_rate_limit_per_second > 0);
