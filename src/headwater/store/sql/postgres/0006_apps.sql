-- Apps synced over the Inngest protocol (POST /fn/register) and their functions. A re-sync
-- replaces an app's functions: those no longer listed are archived (kept, with archived_at set),
-- so their past runs still name a known function. `checksum` is the SHA-256 of the canonical
-- request: an unchanged sync reports modified=false and writes nothing.
CREATE TABLE apps (
    app_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- the SDK's app id (appName / appname)
    url         TEXT NOT NULL,                          -- where the app serves its functions
    sdk         TEXT NOT NULL,                          -- e.g. "py:v0.5.19", "js:v4.24.0"
    framework   TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    synced_at   BIGINT NOT NULL
);
CREATE TABLE app_functions (
    slug        TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- "<app id>-<function id>"
    app_id      TEXT COLLATE "C" NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    config      JSONB NOT NULL,                         -- the function's config as sent
    synced_at   BIGINT NOT NULL,
    archived_at BIGINT                                  -- NULL while the app lists the function
);
CREATE INDEX app_functions_by_app ON app_functions (app_id);
