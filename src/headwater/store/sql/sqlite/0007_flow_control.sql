-- Flow control (flow/): what each queue item needs to be claimed, and the state of the rules.
--
-- Concurrency: an item holds up to two keys with their limits; a claim takes it only while fewer
-- than `limit` leased items hold each of its keys. Throttle: a start item names its throttle until
-- it is admitted. Priority: items sort by `due_at - priority_ms` (an expression index), so a
-- prioritised run starts ahead of runs queued earlier, never before it is due.
ALTER TABLE queue ADD COLUMN priority_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN ckey1 TEXT;
ALTER TABLE queue ADD COLUMN climit1 INTEGER;
ALTER TABLE queue ADD COLUMN ckey2 TEXT;
ALTER TABLE queue ADD COLUMN climit2 INTEGER;
ALTER TABLE queue ADD COLUMN throttle_key TEXT;
ALTER TABLE queue ADD COLUMN throttle_limit INTEGER;
ALTER TABLE queue ADD COLUMN throttle_period_ms INTEGER;
ALTER TABLE queue ADD COLUMN throttle_burst INTEGER;
-- timeouts.start: past it the item is claimed whatever the limits, and the run cancelled.
ALTER TABLE queue ADD COLUMN start_deadline INTEGER;
CREATE INDEX queue_by_rank ON queue (due_at - priority_ms, item_id);
-- The executing items (their keys are what the limits count): a small, hot part of the queue.
CREATE INDEX queue_leased ON queue (lease_until) WHERE lease_until IS NOT NULL;

-- Throttle TATs and rate-limit windows, per key (`t:`/`r:` + function + key value).
CREATE TABLE flow_state (
    key        TEXT    NOT NULL PRIMARY KEY,
    tat        INTEGER,                         -- throttle: theoretical arrival time (GCRA)
    admitted   TEXT,                            -- rate limit: JSON array of admitted times
    updated_at INTEGER NOT NULL                 -- for pruning rows no rule has used for long
) WITHOUT ROWID;

-- Singleton: the run holding each (function, key); it blocks others only while it is active.
CREATE TABLE singleton_keys (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (function_id, key)
) WITHOUT ROWID;

-- Debounce and batching: the open group of each (function, key) is a Queued run still taking
-- events. Claiming the run closes its group (the row is deleted), so later events open another.
CREATE TABLE run_groups (
    function_id TEXT    NOT NULL,
    group_key   TEXT    NOT NULL,
    run_id      TEXT    NOT NULL,
    first_at    INTEGER NOT NULL,               -- the first event's arrival (timeouts count from it)
    size        INTEGER NOT NULL,               -- events in the run
    PRIMARY KEY (function_id, group_key)
) WITHOUT ROWID;
CREATE INDEX run_groups_by_run ON run_groups (run_id);
