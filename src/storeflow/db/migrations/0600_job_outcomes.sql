-- Jobs (issue 12): the outcome of each procrastinate job attempt in storeflow's words (exit code,
-- store, status, error), beside procrastinate's own tables (applied by db/procrastinate.py).
-- procrastinate_jobs says whether a job succeeded; this says with which exit code and why.
CREATE TABLE job_outcomes (
    job_id      bigint      NOT NULL,
    attempt     integer     NOT NULL,
    task_name   text        NOT NULL,
    subject     text,                 -- the store key, Hallmark account or ESL store the job worked on
    exit_code   integer     NOT NULL,
    failure     text        CHECK (failure IN ('transient', 'permanent', 'handed_back')),
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error       text,
    alerted     boolean     NOT NULL DEFAULT false,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX job_outcomes_subject_idx ON job_outcomes (task_name, subject, finished_at DESC);
CREATE INDEX job_outcomes_finished_idx ON job_outcomes (finished_at);
