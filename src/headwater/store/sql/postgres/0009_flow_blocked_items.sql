-- See the SQLite migration of the same number.
ALTER TABLE queue ADD COLUMN blocked_on TEXT COLLATE "C";
DROP INDEX queue_by_rank;
CREATE INDEX queue_by_rank ON queue ((due_at - priority_ms), item_id) WHERE blocked_on IS NULL;
CREATE INDEX queue_blocked ON queue (blocked_on, (due_at - priority_ms), item_id)
    WHERE blocked_on IS NOT NULL;
CREATE INDEX queue_blocked_deadline ON queue (start_deadline)
    WHERE blocked_on IS NOT NULL AND start_deadline IS NOT NULL;
CREATE TABLE blocked_keys (
    key       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    key_limit INTEGER NOT NULL
);
