-- Web console sessions, shared by every node. The cookie's token is stored only as its
-- SHA-256 (hex); the CSRF token is derived from the cookie's token, so it is not stored.
CREATE TABLE console_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    source_ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);

-- The console's overview counts faults of the last 24 hours by code.
CREATE INDEX faults_created ON faults (created_at);
