-- Staging rows are transient (re-derivable from the file, purged after 14 days): no WAL for them.
-- The facts, ledger, audit and rejects stay logged.
ALTER TABLE stg_td_order_report SET UNLOGGED;
ALTER TABLE stg_uc_gst_report SET UNLOGGED;
