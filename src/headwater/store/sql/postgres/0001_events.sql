-- Events as received. `user` is only ever stored sealed (AES-256-GCM, see crypto.py).
-- internal_id and name sort in the "C" collation (byte order, as in SQLite) whatever the database's
-- locale, so paging by internal id and `LIKE 'prefix%'` behave alike on both backends.
CREATE TABLE events (
    internal_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- server-made ULID, what the API returns
    id               TEXT    NOT NULL,              -- the sender's id (idempotency key) or internal_id
    name             TEXT COLLATE "C" NOT NULL,
    data             JSONB   NOT NULL,
    user_key_id      TEXT,                          -- the key that sealed user_ciphertext
    user_ciphertext  BYTEA,                         -- nonce || AES-GCM(user JSON), AAD = internal_id
    user_blind_index BYTEA,                         -- HMAC(external_id), for erasure without decrypting
    user_erased      BOOLEAN NOT NULL DEFAULT FALSE,
    ts               BIGINT  NOT NULL,              -- epoch ms, the sender's or the receive time
    v                TEXT,
    meta             JSONB,
    received_at      BIGINT  NOT NULL               -- epoch ms
);
CREATE INDEX events_by_name ON events (name, internal_id);
CREATE INDEX events_by_sender_id ON events (id, received_at);
CREATE INDEX events_by_received_at ON events (received_at);
CREATE INDEX events_by_blind_index ON events (user_blind_index) WHERE user_blind_index IS NOT NULL;
