-- Each chunk's upsert selects one file's staged rows by row number
-- (WHERE run_id = ? AND ledger_id = ? AND row_number BETWEEN ? AND ?). On (run_id, ledger_id) alone the
-- chunk re-read every earlier staged row of the file, quadratic in file size; with row_number in the key it
-- is an index range scan. The whole-file upsert still uses the (run_id, ledger_id) prefix.
CREATE INDEX IF NOT EXISTS stg_td_order_report_run_row ON stg_td_order_report (run_id, ledger_id, row_number);
DROP INDEX IF EXISTS stg_td_order_report_run;

CREATE INDEX IF NOT EXISTS stg_uc_gst_report_run_row ON stg_uc_gst_report (run_id, ledger_id, row_number);
DROP INDEX IF EXISTS stg_uc_gst_report_run;
