-- Items held back by a concurrency key at its limit leave the claim's path: a claim that finds
-- one marks it `blocked_on` that key (and notes the key in `blocked_keys`); later claims read only
-- unblocked items, and hand a key's blocked items back, earliest first, as its slots free up. So a
-- long backlog of one busy key is read once, not by every claim (fairness and speed).
ALTER TABLE queue ADD COLUMN blocked_on TEXT;
DROP INDEX queue_by_rank;
CREATE INDEX queue_by_rank ON queue (due_at - priority_ms, item_id) WHERE blocked_on IS NULL;
CREATE INDEX queue_blocked ON queue (blocked_on, due_at - priority_ms, item_id)
    WHERE blocked_on IS NOT NULL;
-- Blocked items past their start deadline are handed back at once (to be cancelled).
CREATE INDEX queue_blocked_deadline ON queue (start_deadline)
    WHERE blocked_on IS NOT NULL AND start_deadline IS NOT NULL;
CREATE TABLE blocked_keys (
    key       TEXT    NOT NULL PRIMARY KEY,
    key_limit INTEGER NOT NULL
) WITHOUT ROWID;
