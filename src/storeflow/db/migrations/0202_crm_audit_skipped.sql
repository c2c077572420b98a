-- A store whose advisory lock is held by another run ends 'skipped' (not 'failed'): that other run does the work.
ALTER TABLE ingest_audit DROP CONSTRAINT IF EXISTS ingest_audit_status_check;
ALTER TABLE ingest_audit ADD CONSTRAINT ingest_audit_status_check
    CHECK (status IN ('ok', 'duplicate', 'empty', 'failed', 'needs_bootstrap', 'skipped'));
