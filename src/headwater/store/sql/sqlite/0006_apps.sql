-- Apps synced over the Inngest protocol (POST /fn/register) and their functions. A re-sync
-- replaces an app's functions: those no longer listed are archived (kept, with archived_at set),
-- so their past runs still name a known function. `checksum` is the SHA-256 of the canonical
-- request: an unchanged sync reports modified=false and writes nothing.
CREATE TABLE apps (
    app_id      TEXT    NOT NULL PRIMARY KEY,   -- the SDK's app id (appName / appname)
    url         TEXT    NOT NULL,               -- where the app serves its functions
    sdk         TEXT    NOT NULL,               -- e.g. "py:v0.5.19", "js:v4.24.0"
    framework   TEXT    NOT NULL,
    checksum    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    synced_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE app_functions (
    slug        TEXT    NOT NULL PRIMARY KEY,   -- "<app id>-<function id>", as runs.function_id
    app_id      TEXT    NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    config      TEXT    NOT NULL,               -- the function's config as the SDK sent it (JSON)
    synced_at   INTEGER NOT NULL,
    archived_at INTEGER                         -- NULL while the app still lists the function
) WITHOUT ROWID;
CREATE INDEX app_functions_by_app ON app_functions (app_id);
