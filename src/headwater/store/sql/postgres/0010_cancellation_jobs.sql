-- Bulk cancellations (POST /v1/cancellations, as Inngest's REST API): a function's active runs
-- created in [started_after, started_before), those whose trigger event matches `condition` (a
-- CEL expression, NULL: all), cancelled in the background page by page, newest run first;
-- `cursor_*` is the last run looked at, so a restarted server resumes where the job stopped.
-- One process runs a job at a time under a lease renewed with each page, as replay_jobs.
CREATE TABLE cancellation_jobs (
    job_id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- ULID; the list pages by it
    app_id            TEXT    NOT NULL,
    function_id       TEXT    NOT NULL,             -- the function's id within the app
    started_after     BIGINT  NOT NULL,
    started_before    BIGINT  NOT NULL,
    condition         TEXT,
    state             TEXT    NOT NULL,             -- Running, Completed, Stopped, Failed
    cancelled         BIGINT  NOT NULL,
    cursor_created_at BIGINT,
    cursor_run_id     TEXT COLLATE "C",
    error             TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    ended_at          BIGINT,
    lease_owner       TEXT,
    lease_until       BIGINT
);
-- The engine resumes the running jobs no process holds: only those rows are looked at.
CREATE INDEX cancellation_jobs_running ON cancellation_jobs (job_id) WHERE state = 'Running';
