-- Hallmark Connect (spec 000): canonical stores, imported orders and billing documents,
-- and the run/checkpoint tables behind `storeflow hallmark --resume`.
-- Ids (order, billing document, delivery, customer) are text everywhere: the portal's digits as shown.

CREATE TABLE IF NOT EXISTS stores (
    customer_id   text PRIMARY KEY,
    store_number  text NOT NULL,
    store_name    text NOT NULL,
    raw_data      jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    order_id                text PRIMARY KEY,
    customer_id             text,
    store_number            text,
    store_name              text,
    portal_store_name       text,
    ship_to_location        text,
    season_description      text,
    po_number               text,
    order_reason            text,
    order_source            text,
    planogram_description   text,
    order_status            text,
    order_total             numeric(14, 2),
    order_creation_date     date,
    actual_delivery_date    date,
    requested_delivery_date date,
    comment_description     text,
    source_system_id        text,
    line_count              integer NOT NULL DEFAULT 0,
    source_file             text,
    raw_data                jsonb NOT NULL,
    imported_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_store_date ON orders (store_number, order_creation_date);
CREATE INDEX IF NOT EXISTS orders_customer_date ON orders (customer_id, order_creation_date);

CREATE TABLE IF NOT EXISTS order_items (
    order_id              text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_index            integer NOT NULL,
    line_item_number      integer,
    location_id           text,
    material_number       text,
    stock_number          text,
    upc                   text,
    material_description  text,
    quantity              numeric(14, 3),
    unit_price            numeric(14, 2),
    wholesales            numeric(14, 2),
    retailsin1_wholesale  numeric(14, 2),
    raw_data              jsonb NOT NULL,
    PRIMARY KEY (order_id, line_index)
);

CREATE TABLE IF NOT EXISTS order_deliveries (
    order_id     text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    delivery_id  text NOT NULL,
    raw_data     jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (order_id, delivery_id)
);

CREATE TABLE IF NOT EXISTS order_billing_documents (
    order_id                 text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    billing_document_number  text NOT NULL,
    raw_data                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (order_id, billing_document_number)
);

CREATE TABLE IF NOT EXISTS billing_documents (
    billing_document_id      text PRIMARY KEY,
    customer_id              text,
    store_number             text,
    store_name               text,
    portal_store_name        text,
    billing_document_date    date,
    billing_document_type    text,
    billing_document_status  text,
    po_number                text,
    season_description       text,
    order_id                 text,
    delivery_number          text,
    total                    numeric(14, 2),
    line_count               integer NOT NULL DEFAULT 0,
    source_file              text,
    raw_data                 jsonb NOT NULL,
    imported_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS billing_documents_store_date ON billing_documents (store_number, billing_document_date);

CREATE TABLE IF NOT EXISTS billing_document_items (
    billing_document_id   text NOT NULL REFERENCES billing_documents (billing_document_id) ON DELETE CASCADE,
    line_index            integer NOT NULL,
    line_item_number      integer,
    material_number       text,
    material_description  text,
    quantity              numeric(14, 3),
    unit_price            numeric(14, 2),
    net_amount            numeric(14, 2),
    raw_data              jsonb NOT NULL,
    PRIMARY KEY (billing_document_id, line_index)
);

-- One row per extraction run; `--resume` continues the latest run that did not finish ok.
CREATE TABLE IF NOT EXISTS hallmark_runs (
    run_id           uuid PRIMARY KEY,
    kind             text NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'ok', 'failed', 'stopped')),
    search_complete  boolean NOT NULL DEFAULT false,
    downloaded       integer NOT NULL DEFAULT 0,
    skipped          integer NOT NULL DEFAULT 0,
    failed           integer NOT NULL DEFAULT 0,
    last_error       text
);
CREATE INDEX IF NOT EXISTS hallmark_runs_started ON hallmark_runs (started_at DESC);

-- The records a run has to fetch (search results or the ids given), with their progress.
CREATE TABLE IF NOT EXISTS hallmark_run_items (
    run_id       uuid NOT NULL REFERENCES hallmark_runs (run_id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('order', 'billing')),
    record_id    text NOT NULL,
    position     integer NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'downloaded', 'skipped', 'failed')),
    customer_id  text,
    search_row   jsonb,
    attempts     integer NOT NULL DEFAULT 0,
    error        text,
    path         text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, kind, record_id)
);
CREATE INDEX IF NOT EXISTS hallmark_run_items_todo ON hallmark_run_items (run_id, status, position);
