-- The pipelines' tables as their issues promised them: created only where a
-- pipeline's own migrations have not (a build without that pipeline).
CREATE TABLE IF NOT EXISTS download_ledger (
    id bigserial PRIMARY KEY, run_id uuid, crm text NOT NULL, store text NOT NULL, report_type text,
    file_name text, md5 text, size bigint, downloaded_at timestamptz NOT NULL DEFAULT now(), status text NOT NULL,
    from_date date, to_date date
);
CREATE TABLE IF NOT EXISTS ingest_audit (
    id bigserial PRIMARY KEY, run_id uuid, crm text NOT NULL, store text NOT NULL, from_date date, to_date date,
    inserted_rows integer NOT NULL DEFAULT 0, updated_rows integer NOT NULL DEFAULT 0, md5 text,
    started_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, status text NOT NULL, error text
);
CREATE TABLE IF NOT EXISTS fact_td_orders (
    store_code text NOT NULL, order_number text NOT NULL, order_date date NOT NULL, net_amount numeric(14, 2)
);
CREATE TABLE IF NOT EXISTS fact_uc_gst (
    store_code text NOT NULL, order_number text NOT NULL, invoice_date timestamp NOT NULL, final_amount numeric(14, 2)
);
CREATE TABLE IF NOT EXISTS hallmark_runs (
    run_id uuid PRIMARY KEY, kind text NOT NULL, params jsonb NOT NULL DEFAULT '{}', started_at timestamptz NOT NULL,
    finished_at timestamptz, status text NOT NULL, downloaded integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0, failed integer NOT NULL DEFAULT 0, last_error text
);
CREATE TABLE IF NOT EXISTS hallmark_run_items (
    run_id uuid NOT NULL, item_id text NOT NULL, status text NOT NULL, PRIMARY KEY (run_id, item_id)
);
CREATE TABLE IF NOT EXISTS stores (store_number text PRIMARY KEY, customer_id text, store_name text);
CREATE TABLE IF NOT EXISTS orders (
    order_id text PRIMARY KEY, customer_id text, store_number text, store_name text,
    order_creation_date date, order_total numeric(14, 2)
);
CREATE TABLE IF NOT EXISTS store_mappings (
    id bigserial PRIMARY KEY, source_system text NOT NULL DEFAULT 'shopify', source_store_id text NOT NULL,
    hipoink_store_code text NOT NULL, is_active boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS sync_queue (
    id bigserial PRIMARY KEY, store_mapping_id bigint REFERENCES store_mappings (id), product_id text,
    status text NOT NULL, attempts integer NOT NULL DEFAULT 0, last_error text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sync_log (id bigserial PRIMARY KEY, queue_id bigint, status text, created_at timestamptz);
CREATE TABLE IF NOT EXISTS webhook_inbox (
    id bigserial PRIMARY KEY, shop_domain text, topic text, event_id text, webhook_id text,
    received_at timestamptz NOT NULL DEFAULT now(), outcome text NOT NULL, reason text
);
