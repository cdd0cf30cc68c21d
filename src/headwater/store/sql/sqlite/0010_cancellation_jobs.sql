-- Bulk cancellations (POST /v1/cancellations, as Inngest's REST API): a function's active runs
-- created in [started_after, started_before), those whose trigger event matches `condition` (a
-- CEL expression, NULL: all), cancelled in the background page by page, newest run first;
-- `cursor_*` is the last run looked at, so a restarted server resumes where the job stopped.
-- One process runs a job at a time under a lease renewed with each page, as replay_jobs.
CREATE TABLE cancellation_jobs (
    job_id            TEXT    NOT NULL PRIMARY KEY,  -- ULID; the list pages newest first by it
    app_id            TEXT    NOT NULL,
    function_id       TEXT    NOT NULL,             -- the function's id within the app
    started_after     INTEGER NOT NULL,
    started_before    INTEGER NOT NULL,
    condition         TEXT,
    state             TEXT    NOT NULL,             -- Running, Completed, Stopped, Failed
    cancelled         INTEGER NOT NULL,
    cursor_created_at INTEGER,
    cursor_run_id     TEXT,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    lease_owner       TEXT,
    lease_until       INTEGER
) WITHOUT ROWID;
-- The engine resumes the running jobs no process holds: only those rows are looked at.
CREATE INDEX cancellation_jobs_running ON cancellation_jobs (job_id) WHERE state = 'Running';
