-- Spec 001: CRM report downloads (TumbleDry, UClean) and their ingestion.

-- Every file a run obtained, with its md5; an md5 already `ingested` for the store is a duplicate.
CREATE TABLE IF NOT EXISTS download_ledger (
    id            bigserial PRIMARY KEY,
    run_id        uuid NOT NULL,
    crm           text NOT NULL CHECK (crm IN ('td', 'uc')),
    store         text NOT NULL,
    report_type   text NOT NULL,
    mode          text,
    file_name     text NOT NULL,
    md5           text NOT NULL,
    size          bigint NOT NULL,
    downloaded_at timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL DEFAULT 'downloaded'
                  CHECK (status IN ('downloaded', 'ingested', 'duplicate', 'empty', 'failed')),
    from_date     date NOT NULL,
    to_date       date NOT NULL,
    error         text
);
CREATE INDEX IF NOT EXISTS download_ledger_store_md5 ON download_ledger (crm, store, md5);
CREATE INDEX IF NOT EXISTS download_ledger_downloaded ON download_ledger (downloaded_at DESC);

-- One row per store per run (spec 2.5 step 4), including stores that never got a file.
CREATE TABLE IF NOT EXISTS ingest_audit (
    id             bigserial PRIMARY KEY,
    run_id         uuid NOT NULL,
    crm            text NOT NULL CHECK (crm IN ('td', 'uc')),
    store          text NOT NULL,
    from_date      date,
    to_date        date,
    inserted_rows  integer NOT NULL DEFAULT 0,
    updated_rows   integer NOT NULL DEFAULT 0,
    unchanged_rows integer NOT NULL DEFAULT 0,
    rejected_rows  integer NOT NULL DEFAULT 0,
    md5            text,
    file_name      text,
    mode           text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    status         text NOT NULL CHECK (status IN ('ok', 'duplicate', 'empty', 'failed', 'needs_bootstrap')),
    error          text
);
CREATE INDEX IF NOT EXISTS ingest_audit_store_finished ON ingest_audit (crm, store, finished_at DESC);

-- Rows that could not be loaded (bad date, amount or key), with the reason.
CREATE TABLE IF NOT EXISTS crm_rejects (
    id          bigserial PRIMARY KEY,
    run_id      uuid NOT NULL,
    crm         text NOT NULL,
    store       text NOT NULL,
    file_name   text NOT NULL,
    row_number  integer NOT NULL,
    remark      text NOT NULL,
    raw_data    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS crm_rejects_run ON crm_rejects (run_id);

-- TumbleDry order report (42 columns). Staging keeps each run's rows; facts hold one row per order.
CREATE TABLE IF NOT EXISTS stg_td_order_report (
    run_id                 uuid NOT NULL,
    ledger_id              bigint NOT NULL,
    row_number             integer NOT NULL,
    store_code             text NOT NULL,
    order_number           text NOT NULL,
    order_date             date NOT NULL,
    order_at               timestamp,
    customer_code          text,
    customer_name          text,
    address                text,
    phone                  text,
    preference             text,
    due_date               date,
    last_activity          text,
    pieces                 integer,
    weight                 numeric(12, 3),
    gross_amount           numeric(14, 2),
    discount               numeric(14, 2),
    tax                    numeric(14, 2),
    net_amount             numeric(14, 2),
    advance                numeric(14, 2),
    paid                   numeric(14, 2),
    adjustment             numeric(14, 2),
    balance                numeric(14, 2),
    advance_received       numeric(14, 2),
    advance_used           numeric(14, 2),
    booked_by              text,
    workshop_note          text,
    order_note             text,
    home_delivery          text,
    area_location          text,
    garments_inspected_by  text,
    customer_gstin         text,
    registration_source    text,
    order_from_pos         text,
    package                text,
    package_type           text,
    package_name           text,
    feedback               text,
    tags                   text,
    comment                text,
    primary_services       text,
    top_up_extra_service   text,
    order_status           text,
    last_payment_activity  text,
    package_payment_info   text,
    coupon_code            text,
    remarks                text,
    raw_data               jsonb NOT NULL,
    loaded_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stg_td_order_report_run ON stg_td_order_report (run_id, ledger_id);

CREATE TABLE IF NOT EXISTS fact_td_orders (
    LIKE stg_td_order_report EXCLUDING DEFAULTS EXCLUDING INDEXES,
    first_run_id  uuid,
    inserted_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_code, order_number, order_date)
);
ALTER TABLE fact_td_orders DROP COLUMN IF EXISTS loaded_at;
ALTER TABLE fact_td_orders DROP COLUMN IF EXISTS row_number;
CREATE INDEX IF NOT EXISTS fact_td_orders_date ON fact_td_orders (store_code, order_date);

-- UClean GST report: the legacy XLSX export and the tax-report API fields in one shape.
CREATE TABLE IF NOT EXISTS stg_uc_gst_report (
    run_id           uuid NOT NULL,
    ledger_id        bigint NOT NULL,
    row_number       integer NOT NULL,
    store_code       text NOT NULL,
    order_number     text NOT NULL,
    invoice_date     date NOT NULL,
    invoice_at       timestamp,
    invoice_number   text,
    customer_name    text,
    customer_phone   text,
    customer_gst     text,
    payment_status   text,
    place_of_supply  text,
    service_names    text,
    cloth_item_names text,
    cloth_quantity   integer,
    address          text,
    store_address    text,
    city_name        text,
    taxable_value    numeric(14, 2),
    cgst             numeric(14, 2),
    sgst             numeric(14, 2),
    total_tax        numeric(14, 2),
    final_amount     numeric(14, 2),
    remarks          text,
    raw_data         jsonb NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stg_uc_gst_report_run ON stg_uc_gst_report (run_id, ledger_id);

CREATE TABLE IF NOT EXISTS fact_uc_gst (
    LIKE stg_uc_gst_report EXCLUDING DEFAULTS EXCLUDING INDEXES,
    first_run_id  uuid,
    inserted_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_code, order_number, invoice_date)
);
ALTER TABLE fact_uc_gst DROP COLUMN IF EXISTS loaded_at;
ALTER TABLE fact_uc_gst DROP COLUMN IF EXISTS row_number;
CREATE INDEX IF NOT EXISTS fact_uc_gst_date ON fact_uc_gst (store_code, invoice_date);
