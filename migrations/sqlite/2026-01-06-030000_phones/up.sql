-- Phones that fetch configuration files (Polycom, Yealink, Grandstream, Cisco, Snom). Each
-- phone is also a row of `devices` (id `phone-<mac>`), so it owns VoIP lines and tags like
-- any device. Keep in step with the other backend.

-- Settings shared by a group of phones (JSON, see src/phones/mod.rs `Settings`).
CREATE TABLE phone_profiles (
    name TEXT PRIMARY KEY NOT NULL,
    settings TEXT NOT NULL,
    -- Bumped on every change: rendered files of its phones are made again.
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE phones (
    -- 12 lower-case hex digits.
    mac TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE,
    vendor TEXT NOT NULL,
    model TEXT NOT NULL,
    profile TEXT,
    -- The phone's own settings, JSON.
    settings TEXT NOT NULL,
    -- The secret path segment of its provisioning URL: sealed, and its SHA-256 (hex) to
    -- find the phone by it.
    token TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    -- Password encrypting its files (Grandstream), sealed; none = the global one, if any.
    file_password TEXT,
    -- Bumped on every change of the phone (its lines bump the device's work_epoch).
    revision BIGINT NOT NULL,
    -- The network of its first fetch, when fetches are locked to it.
    lock_network TEXT,
    -- Where SIP NOTIFY check-sync goes (host:port) when the operator set it.
    contact TEXT,
    last_seen BIGINT,
    last_source TEXT,
    last_user_agent TEXT,
    firmware TEXT,
    last_file TEXT,
    auto_registered INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Every fetch, served or refused (mac is null when the request named no phone we know).
CREATE TABLE phone_fetches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mac TEXT,
    file TEXT NOT NULL,
    source TEXT NOT NULL,
    protocol TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    status INTEGER NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX phone_fetches_mac ON phone_fetches (mac, id);

-- Files phones upload (Polycom overrides and logs), kept with the phone.
CREATE TABLE phone_uploads (
    mac TEXT NOT NULL REFERENCES phones (mac) ON DELETE CASCADE,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (mac, name)
);
