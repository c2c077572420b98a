-- Core tables shared by every pipeline.

-- One row per pipeline run (hallmark extraction, crm download, esl resync ...).
CREATE TABLE IF NOT EXISTS pipeline_runs (
    run_id       uuid PRIMARY KEY,
    pipeline     text NOT NULL,
    command      text NOT NULL,
    store        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'ok', 'failed', 'partial', 'stopped')),
    summary      jsonb NOT NULL DEFAULT '{}'::jsonb,
    error        text
);
CREATE INDEX IF NOT EXISTS pipeline_runs_pipeline_started ON pipeline_runs (pipeline, started_at DESC);

-- Last validity check of every stored browser session (dashboard "Sessions").
CREATE TABLE IF NOT EXISTS session_checks (
    session_key  text PRIMARY KEY,
    pipeline     text NOT NULL,
    store        text,
    path         text NOT NULL,
    saved_at     timestamptz,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    valid        boolean NOT NULL,
    detail       text
);
