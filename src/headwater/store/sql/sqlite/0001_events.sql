-- Events as received. `user` is only ever stored sealed (AES-256-GCM, see crypto.py).
CREATE TABLE events (
    internal_id      TEXT    NOT NULL PRIMARY KEY,  -- server-made ULID, what the API returns
    id               TEXT    NOT NULL,              -- the sender's id (idempotency key) or internal_id
    name             TEXT    NOT NULL,
    data             TEXT    NOT NULL,              -- JSON object
    user_key_id      TEXT,                          -- the key that sealed user_ciphertext
    user_ciphertext  BLOB,                          -- nonce || AES-GCM(user JSON), AAD = internal_id
    user_blind_index BLOB,                          -- HMAC(external_id), for erasure without decrypting
    user_erased      INTEGER NOT NULL DEFAULT 0,
    ts               INTEGER NOT NULL,              -- epoch ms, the sender's or the receive time
    v                TEXT,
    meta             TEXT,                          -- JSON object or NULL
    received_at      INTEGER NOT NULL               -- epoch ms
);
CREATE INDEX events_by_name ON events (name, internal_id);
CREATE INDEX events_by_sender_id ON events (id, received_at);
CREATE INDEX events_by_received_at ON events (received_at);
CREATE INDEX events_by_blind_index ON events (user_blind_index) WHERE user_blind_index IS NOT NULL;
