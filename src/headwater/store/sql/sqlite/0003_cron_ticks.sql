-- Cron ticks that fired, one row per (function, tick): the schedules' memory across restarts.
-- A server starting up fires at most the latest tick missed since a function's last row, and a
-- function without rows is new (its earlier ticks are not "missed"). Exactly-once firing does not
-- rest on this table: a tick's event has an id derived from (function, tick), stored once with its
-- run. WITHOUT ROWID: tiny rows, always reached by their key (the latest tick of a function is the
-- last entry of its key range).
CREATE TABLE cron_ticks (
    function_id TEXT    NOT NULL,               -- the function's slug, as runs.function_id
    tick_at     INTEGER NOT NULL,               -- the tick, epoch ms
    PRIMARY KEY (function_id, tick_at)
) WITHOUT ROWID;
