-- Flow control (flow/): what each queue item needs to be claimed, and the state of the rules.
-- See the SQLite migration of the same number for the design; the two are kept alike.
ALTER TABLE queue ADD COLUMN priority_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN ckey1 TEXT COLLATE "C";
ALTER TABLE queue ADD COLUMN climit1 INTEGER;
ALTER TABLE queue ADD COLUMN ckey2 TEXT COLLATE "C";
ALTER TABLE queue ADD COLUMN climit2 INTEGER;
ALTER TABLE queue ADD COLUMN throttle_key TEXT COLLATE "C";
ALTER TABLE queue ADD COLUMN throttle_limit INTEGER;
ALTER TABLE queue ADD COLUMN throttle_period_ms BIGINT;
ALTER TABLE queue ADD COLUMN throttle_burst INTEGER;
ALTER TABLE queue ADD COLUMN start_deadline BIGINT;
CREATE INDEX queue_by_rank ON queue ((due_at - priority_ms), item_id);
CREATE INDEX queue_leased ON queue (lease_until) WHERE lease_until IS NOT NULL;

CREATE TABLE flow_state (
    key        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tat        BIGINT,
    admitted   TEXT,                            -- JSON, opaque to SQL (as in SQLite)
    updated_at BIGINT NOT NULL
);

CREATE TABLE singleton_keys (
    function_id TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    run_id      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (function_id, key)
);

CREATE TABLE run_groups (
    function_id TEXT COLLATE "C" NOT NULL,
    group_key   TEXT COLLATE "C" NOT NULL,
    run_id      TEXT COLLATE "C" NOT NULL,
    first_at    BIGINT  NOT NULL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (function_id, group_key)
);
CREATE INDEX run_groups_by_run ON run_groups (run_id);
