-- Runs waiting for an event: `step.wait_for_event` (kind 'step') and `cancel_on` (kind 'cancel').
-- An incoming event is matched by name through `waits_by_event`, then by each wait's expression.
CREATE TABLE waits (
    wait_id     TEXT    NOT NULL PRIMARY KEY,    -- deterministic: run id + step id (or cancel rule)
    run_id      TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,                -- 'step' or 'cancel'
    event_name  TEXT    NOT NULL,
    expression  TEXT,                            -- CEL over `event` (trigger) and `async` (candidate)
    step_id     TEXT,                            -- kind 'step': the step a match resolves
    step_name   TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    match_from  INTEGER NOT NULL                 -- events received from then on are candidates
) WITHOUT ROWID;
CREATE INDEX waits_by_event ON waits (event_name, expires_at);
CREATE INDEX waits_by_run ON waits (run_id);
