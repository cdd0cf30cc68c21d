-- See the SQLite migration of the same number.
CREATE INDEX runs_by_ended_at ON runs (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at)
    WHERE expires_at IS NOT NULL;
