-- Issue 13: reconciliation against the Shopify Admin API, and webhook subscription checks.

-- One row per reconciliation run of one shop (dry runs leave none).
-- status: running -> succeeded | failed; method: pages | bulk | bulk->pages (a failed bulk fell back)
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id                bigserial PRIMARY KEY,
    shop_domain       text NOT NULL,
    store_mapping_id  bigint,
    mode              text NOT NULL CHECK (mode IN ('incremental', 'full')),
    trigger           text NOT NULL DEFAULT 'manual',     -- manual | subscriptions-check | schedule
    method            text,
    since             timestamptz,                        -- incremental: updated_at > since
    snapshot_at       timestamptz,                        -- full: when Shopify's listing began
    high_water        timestamptz,                        -- newest updatedAt seen (next run starts here)
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    status            text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    pages             integer NOT NULL DEFAULT 0,
    requests          integer NOT NULL DEFAULT 0,
    cost_used         integer NOT NULL DEFAULT 0,
    throttled_retries integer NOT NULL DEFAULT 0,
    products_seen     integer NOT NULL DEFAULT 0,
    created           integer NOT NULL DEFAULT 0,
    updated           integer NOT NULL DEFAULT 0,
    deleted           integer NOT NULL DEFAULT 0,
    unchanged         integer NOT NULL DEFAULT 0,
    skipped_newer     integer NOT NULL DEFAULT 0,
    enqueued          integer NOT NULL DEFAULT 0,
    error             text
);
CREATE INDEX IF NOT EXISTS reconcile_runs_shop ON reconcile_runs (shop_domain, started_at DESC);

-- One row per `esl subscriptions check|sync` of one shop: what was missing and what was done.
CREATE TABLE IF NOT EXISTS webhook_subscription_checks (
    id            bigserial PRIMARY KEY,
    shop_domain   text NOT NULL,
    checked_at    timestamptz NOT NULL DEFAULT now(),
    action        text NOT NULL,                          -- check | sync
    expected      integer NOT NULL,
    present       integer NOT NULL,
    missing       text[] NOT NULL DEFAULT '{}',           -- topics Shopify no longer had
    created       text[] NOT NULL DEFAULT '{}',
    deleted       text[] NOT NULL DEFAULT '{}',
    reconcile_run_id bigint,                              -- the reconciliation a check started
    error         text
);
CREATE INDEX IF NOT EXISTS webhook_subscription_checks_shop ON webhook_subscription_checks (shop_domain, checked_at DESC);

