-- Functions' runs, their memoized steps, and the queue that drives their executions.
-- Times are epoch ms. JSON values are stored as TEXT, written from the bytes the engine encoded.
-- `status` has no CHECK: SQLite can only change a CHECK by rebuilding the table, and a later
-- status (e.g. Paused) should cost one migration line, not a copy of every run.
CREATE TABLE runs (
    run_id      TEXT    NOT NULL PRIMARY KEY,   -- ULID
    function_id TEXT    NOT NULL,
    status      TEXT    NOT NULL,               -- a RunStatus value: Queued, Running, Completed, ...
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,                        -- when the first execution was claimed
    ended_at    INTEGER,                        -- when it reached a final status
    output      TEXT,                           -- JSON: the function's return value
    error       TEXT,                           -- JSON: the final error
    reason      TEXT                            -- why it was skipped or cancelled
);

-- The events that triggered each run, in the order the run lists them (`position`), so a run's
-- `event_ids` read back exactly. WITHOUT ROWID: the rows are tiny and always read by their
-- primary key prefix (a run's links) or through the index below, so clustering on the key saves a
-- lookup per row. No foreign key to `events`: event retention must not be blocked by runs.
CREATE TABLE run_events (
    run_id   TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    event_id TEXT    NOT NULL,                  -- events.internal_id
    PRIMARY KEY (run_id, position)
) WITHOUT ROWID;
-- `list_runs_for_event`: an index lookup; run_id is in the index, so it also covers the join.
CREATE INDEX run_events_by_event ON run_events (event_id, run_id);

-- Finished steps' memos, recorded exactly once per (run, step). A rowid table, not WITHOUT ROWID:
-- a memo may be large (a step's whole output), and SQLite advises WITHOUT ROWID for small rows.
CREATE TABLE run_steps (
    run_id     TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step_id    TEXT    NOT NULL,                -- the SDK's hashed step id
    seq        INTEGER NOT NULL,                -- 1, 2, 3... within the run: the recording order
    name       TEXT    NOT NULL,
    op         TEXT    NOT NULL,
    memo       TEXT    NOT NULL,                -- JSON: what the SDK gets back in steps[id]
    started_at INTEGER NOT NULL,
    ended_at   INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
-- Serves both `max(seq)` when a step is recorded and `list_steps` (run_id = ? ORDER BY seq)
-- without a sort. Unique: one writer numbers the steps, so a clash would be a bug, not a race.
CREATE UNIQUE INDEX run_steps_in_order ON run_steps (run_id, seq);

-- Idempotency keys: which run holds (function, key) and until when. A key held by an expired row
-- is claimed by overwriting the row, so the table has one row per key ever used, not per run.
CREATE TABLE idempotency_keys (
    function_id TEXT    NOT NULL,
    key         TEXT    NOT NULL,               -- the triggering event's own `id`
    run_id      TEXT    NOT NULL,               -- the holder (no foreign key: runs may be purged first)
    created_at  INTEGER NOT NULL,               -- the holder's creation: in the upsert, excluded's
                                                -- is the claiming run's, to compare with expires_at
    expires_at  INTEGER,                        -- NULL: never expires
    PRIMARY KEY (function_id, key)
) WITHOUT ROWID;

-- Due executions: a run's start, a resume after a sleep, a retry. An execution leases its item
-- (lease_owner until lease_until); an expired lease makes the item claimable again, which is how
-- the work of a crashed process is picked up. WITHOUT ROWID: small rows, always reached by item_id
-- or through an index, and every secondary index then carries item_id for free.
CREATE TABLE queue (
    item_id     TEXT    NOT NULL PRIMARY KEY,   -- ULID
    run_id      TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    due_at      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER
) WITHOUT ROWID;
-- Claiming reads `due_at <= now ORDER BY due_at, item_id LIMIT n`: a range scan of this index in
-- its own order, stopping after n claimable rows, whatever the size of the queue.
CREATE INDEX queue_by_due_at ON queue (due_at, item_id);
-- Finishing or cancelling a run deletes all its items (and the foreign key's cascade needs it).
CREATE INDEX queue_by_run ON queue (run_id);
