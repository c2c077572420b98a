-- Spec 002: Shopify -> Hipoink shelf-label sync.
-- Shopify ids exceed 2^53: they are kept as text (source_*_id) and never pass through a float.
-- No foreign keys on the webhook path: each costs a trigger and a row lock per inserted row, and the
-- ones to store_mappings would make every concurrent webhook lock the same mapping row. Products are
-- never deleted (only marked), so the references cannot dangle.

-- Shopify shop -> Hipoink store, with per-mapping transform options.
CREATE TABLE IF NOT EXISTS store_mappings (
    id                  bigserial PRIMARY KEY,
    source_system       text NOT NULL DEFAULT 'shopify',
    source_store_id     text NOT NULL,                 -- the shop domain, lower case
    hipoink_store_code  text NOT NULL,
    is_active           boolean NOT NULL DEFAULT true,
    -- where `pc` comes from, first non-empty wins: barcode | sku | variant_id
    pc_fallback         text[] NOT NULL DEFAULT ARRAY['barcode', 'sku', 'variant_id'],
    -- the Hipoink product field that receives stock (e.g. 'f1'); NULL = stock is not sent
    stock_field         text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT store_mappings_pc_fallback_known
        CHECK (pc_fallback <@ ARRAY['barcode', 'sku', 'variant_id'] AND cardinality(pc_fallback) >= 1)
);
CREATE UNIQUE INDEX IF NOT EXISTS store_mappings_source ON store_mappings (source_system, source_store_id);

-- Every webhook whose HMAC was valid, committed before it is acknowledged.
-- outcome: received (transient, inside the ingest transaction), enqueued, unchanged, stored, stale,
--          unmatched, ignored, duplicate, invalid
CREATE TABLE IF NOT EXISTS webhook_inbox (
    id              bigserial PRIMARY KEY,
    shop_domain     text NOT NULL,
    topic           text NOT NULL,
    event_id        text,
    webhook_id      text,
    dedupe_key      text,                              -- event_id, else webhook_id
    triggered_at    timestamptz,
    api_version     text,
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    outcome         text NOT NULL,
    reason          text,
    items_enqueued  integer NOT NULL DEFAULT 0,
    store_mapping_id bigint,
    raw_body        bytea NOT NULL,                    -- exactly the signed bytes
    headers         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_inbox_dedupe
    ON webhook_inbox (shop_domain, dedupe_key) WHERE dedupe_key IS NOT NULL AND outcome <> 'duplicate';
CREATE INDEX IF NOT EXISTS webhook_inbox_received ON webhook_inbox (received_at DESC);

-- One row per Shopify variant: the normalised label fields (the Hipoink product) and the ordering key.
CREATE TABLE IF NOT EXISTS products (
    id                  bigserial PRIMARY KEY,
    -- store_mappings.id; no foreign key: every concurrent webhook would KEY SHARE-lock the same
    -- mapping row, and PostgreSQL's multixacts for that one row become the bottleneck
    store_mapping_id    bigint NOT NULL,
    source_system       text NOT NULL DEFAULT 'shopify',
    source_store_id     text NOT NULL,
    source_id           text NOT NULL,                 -- Shopify product id
    source_variant_id   text NOT NULL,
    inventory_item_id   text,
    barcode             text,
    sku                 text,
    pc                  text,                          -- Hipoink product code
    pn                  text,                          -- name
    pp                  text,                          -- price, normalised decimal string
    pi                  text,                          -- inner code (sku)
    pim                 text,                          -- image URL
    stock               bigint,                        -- sum of available over locations
    status              text NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'invalid', 'deleted')),
    validation_errors   text,
    source_updated_at   timestamptz,                   -- Shopify's updated_at: newer wins
    label_changed       boolean NOT NULL DEFAULT true, -- did the last applied update change a label field?
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS products_source_variant
    ON products (source_system, source_store_id, source_variant_id);
CREATE INDEX IF NOT EXISTS products_source_product ON products (source_id);

-- Products deleted in Shopify (ids are never reused): a late create/update must not bring one back.
CREATE TABLE IF NOT EXISTS product_tombstones (
    source_system    text NOT NULL DEFAULT 'shopify',
    source_store_id  text NOT NULL,
    source_id        text NOT NULL,
    deleted_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_system, source_store_id, source_id)
);

-- inventory_levels/update names only the inventory item: this maps it to the variant.
CREATE TABLE IF NOT EXISTS inventory_item_map (
    source_store_id    text NOT NULL,
    inventory_item_id  text NOT NULL,
    product_row_id     bigint NOT NULL,                 -- products.id
    source_variant_id  text NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_store_id, inventory_item_id)
);

-- Last known level per inventory item and location (kept even before the variant is known).
CREATE TABLE IF NOT EXISTS inventory_levels (
    source_store_id    text NOT NULL,
    inventory_item_id  text NOT NULL,
    location_id        text NOT NULL,
    available          bigint,
    source_updated_at  timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_store_id, inventory_item_id, location_id)
);

-- The durable queue. state: pending -> in_progress -> succeeded | failed (permanent) | dead (out of attempts)
CREATE TABLE IF NOT EXISTS sync_queue (
    id                bigserial PRIMARY KEY,
    store_mapping_id  bigint NOT NULL,                 -- store_mappings.id (no FK: see products)
    store_code        text NOT NULL,
    product_id        bigint NOT NULL,                 -- products.id (rows are never deleted, only marked)
    operation         text NOT NULL CHECK (operation IN ('upsert', 'delete')),
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'in_progress', 'succeeded', 'failed', 'dead')),
    attempts          integer NOT NULL DEFAULT 0,
    run_after         timestamptz NOT NULL DEFAULT now(),
    locked_by         text,
    locked_until      timestamptz,
    last_error        text,
    inbox_id          bigint,                          -- webhook_inbox.id (written in the same transaction)
    reason            text NOT NULL DEFAULT 'webhook',  -- webhook | resync | retry
    enqueued_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_at        timestamptz,
    finished_at       timestamptz
);
CREATE INDEX IF NOT EXISTS sync_queue_pending ON sync_queue (run_after, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS sync_queue_in_progress ON sync_queue (product_id) WHERE state = 'in_progress';
CREATE INDEX IF NOT EXISTS sync_queue_lease ON sync_queue (locked_until) WHERE state = 'in_progress';
CREATE INDEX IF NOT EXISTS sync_queue_dead ON sync_queue (store_code, id) WHERE state IN ('failed', 'dead');

-- One row per attempt (and per variant that failed validation, which is never sent).
-- status: succeeded | retry | failed | dead | invalid | lease_expired
CREATE TABLE IF NOT EXISTS sync_log (
    id              bigserial PRIMARY KEY,
    -- no foreign keys: an audit row outlives what it describes, and bulk writes stay cheap
    queue_item_id   bigint,
    inbox_id        bigint,
    store_code      text NOT NULL,
    product_id      bigint,
    product_code    text,
    operation       text,
    attempt         integer NOT NULL DEFAULT 0,
    status          text NOT NULL,
    error           text,
    http_status     integer,
    error_code      integer,
    worker          text,
    detail          text,
    enqueued_at     timestamptz,                       -- when the webhook was committed (= acknowledged)
    sent_at         timestamptz,                       -- request to Hipoink started
    acked_at        timestamptz,                       -- Hipoink answered
    latency_ms      double precision,                  -- acked_at - enqueued_at
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sync_log_created ON sync_log (created_at DESC);
CREATE INDEX IF NOT EXISTS sync_log_queue_item ON sync_log (queue_item_id);
CREATE INDEX IF NOT EXISTS sync_log_errors ON sync_log (created_at DESC) WHERE error IS NOT NULL;

-- What Hipoink holds for each of our products (the code last sent), so deletes and code changes
-- remove the right label product.
CREATE TABLE IF NOT EXISTS hipoink_products (
    product_id     bigint PRIMARY KEY,                 -- products.id
    store_code     text NOT NULL,
    pc             text NOT NULL,
    payload        jsonb NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hipoink_products_store ON hipoink_products (store_code, pc);
