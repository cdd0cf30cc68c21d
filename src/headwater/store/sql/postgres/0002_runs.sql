-- Functions' runs, their memoized steps, and the queue that drives their executions.
-- Times are epoch ms (BIGINT). JSON values are JSONB, written from the bytes the engine encoded.
-- Every text key compared in an index sorts in the "C" collation: ULIDs then order as in SQLite
-- (byte order) whatever the database's locale, and comparisons are plain memcmp.
-- `status` has no CHECK, as in SQLite, so both dialects accept the same values.
CREATE TABLE runs (
    run_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- ULID
    function_id TEXT COLLATE "C" NOT NULL,
    status      TEXT    NOT NULL,               -- a RunStatus value: Queued, Running, Completed, ...
    created_at  BIGINT  NOT NULL,
    started_at  BIGINT,                         -- when the first execution was claimed
    ended_at    BIGINT,                         -- when it reached a final status
    output      JSONB,                          -- the function's return value
    error       JSONB,                          -- the final error
    reason      TEXT                            -- why it was skipped or cancelled
);

-- The events that triggered each run, in the order the run lists them (`position`), so a run's
-- `event_ids` read back exactly. No foreign key to `events`: event retention must not be blocked
-- by runs (and the insert skips a lookup per link).
CREATE TABLE run_events (
    run_id   TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,         -- events.internal_id
    PRIMARY KEY (run_id, position)
);
-- `list_runs_for_event`: an index lookup; run_id in the key lets it be an index-only scan.
CREATE INDEX run_events_by_event ON run_events (event_id, run_id);

-- Finished steps' memos, recorded exactly once per (run, step).
-- `seq` comes from one sequence for the whole table: it increases in insertion order, so ordering
-- a run's steps by it is their recording order. Numbering per run (max + 1, as SQLite does) would
-- make two steps of one run recorded at once (parallel steps) race for the same number; the
-- sequence needs no lock on the run and never clashes.
CREATE TABLE run_steps (
    run_id     TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step_id    TEXT COLLATE "C" NOT NULL,       -- the SDK's hashed step id
    seq        BIGINT  GENERATED ALWAYS AS IDENTITY,
    name       TEXT    NOT NULL,
    op         TEXT    NOT NULL,
    memo       JSONB   NOT NULL,                -- what the SDK gets back in steps[id]
    started_at BIGINT  NOT NULL,
    ended_at   BIGINT  NOT NULL,
    attempts   INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
-- (No index on (run_id, seq): `list_steps` finds a run's steps through the primary key and sorts
-- that handful of rows; another index would cost every step insert more than it saves.)

-- Idempotency keys: which run holds (function, key) and until when. A key held by an expired row
-- is claimed by overwriting the row (an upsert whose WHERE checks the expiry), so the table has
-- one row per key ever used, not per run, and concurrent claims serialise on the key's row.
CREATE TABLE idempotency_keys (
    function_id TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,      -- the triggering event's own `id`
    run_id      TEXT COLLATE "C" NOT NULL,      -- the holder (no foreign key: runs may be purged first)
    created_at  BIGINT  NOT NULL,               -- the holder's creation: in the upsert, EXCLUDED's
                                                -- is the claiming run's, to compare with expires_at
    expires_at  BIGINT,                         -- NULL: never expires
    PRIMARY KEY (function_id, key)
);

-- Due executions: a run's start, a resume after a sleep, a retry. An execution leases its item
-- (lease_owner until lease_until); an expired lease makes the item claimable again, which is how
-- the work of a crashed process is picked up.
CREATE TABLE queue (
    item_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- ULID
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    due_at      BIGINT  NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT
);
-- Claiming reads `due_at <= now ORDER BY due_at, item_id LIMIT n FOR UPDATE SKIP LOCKED`: a range
-- scan of this index in its own order (no sort), stopping after n claimable rows.
CREATE INDEX queue_by_due_at ON queue (due_at, item_id);
-- Finishing or cancelling a run deletes all its items (and the foreign key's cascade needs it).
CREATE INDEX queue_by_run ON queue (run_id);
