-- The dashboard's run lists and replay. Run lists page newest first by (created_at, run_id), so
-- each filter has an index in that order: a page is a range scan stopping after `limit` rows, and
-- a status count is an index-only range scan stopping at the count's cap.
CREATE INDEX runs_by_created ON runs (created_at, run_id);
CREATE INDEX runs_by_function_created ON runs (function_id, created_at, run_id);
CREATE INDEX runs_by_status_created ON runs (status, created_at, run_id);
CREATE INDEX runs_by_function_status ON runs (function_id, status, created_at, run_id);

-- A replayed run's origin. A table of its own rather than a column of `runs`: the run verbs stay
-- as they are, and only replays pay for the link.
CREATE TABLE run_replays (
    run_id    TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    replay_of TEXT COLLATE "C" NOT NULL,        -- the replayed run (no foreign key: it may be purged)
    from_step TEXT,                             -- the step it restarted from; NULL: the start
    job_id    TEXT                              -- the bulk replay that made it, if any
);
CREATE INDEX run_replays_by_original ON run_replays (replay_of, run_id);

-- Bulk replays (POST /v1/replays): run in the background, page by page, newest run first;
-- `cursor_*` is the last run replayed, so a restarted server resumes where the job stopped.
-- One process runs a job at a time: it holds a lease (`lease_owner` until `lease_until`), renewed
-- with each page; a lease left to expire (the process died) lets another process take the job over.
CREATE TABLE replay_jobs (
    job_id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- ULID
    function_id       TEXT    NOT NULL,
    created_after     BIGINT  NOT NULL,
    created_before    BIGINT  NOT NULL,
    statuses          TEXT    NOT NULL,             -- comma-separated RunStatus values
    state             TEXT    NOT NULL,             -- Running, Completed, Cancelled, Failed
    total             BIGINT  NOT NULL,
    replayed          BIGINT  NOT NULL,
    cursor_created_at BIGINT,
    cursor_run_id     TEXT COLLATE "C",
    error             TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    ended_at          BIGINT,
    lease_owner       TEXT,
    lease_until       BIGINT
);

-- The dashboard lists events newest received first, keyset-paged on (received_at, internal_id):
-- a time window is then a range of this index, not a scan of the primary key filtered by time.
-- The same by name (the REST list's events_by_name is in internal id order, which this page is
-- not). The first supersedes events_by_received_at (its prefix), which goes.
CREATE INDEX events_by_received ON events (received_at, internal_id);
CREATE INDEX events_by_name_received ON events (name, received_at, internal_id);
DROP INDEX events_by_received_at;
