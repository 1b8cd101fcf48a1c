-- Initial schema (SQLite). Timestamps are UTC milliseconds since the Unix epoch (BIGINT),
-- identical on both backends. Keep in step with migrations/postgres.

CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    oui TEXT NOT NULL,
    product_class TEXT NOT NULL,
    serial_number TEXT NOT NULL,
    manufacturer TEXT NOT NULL DEFAULT '',
    model_name TEXT NOT NULL DEFAULT '',
    software_version TEXT NOT NULL DEFAULT '',
    hardware_version TEXT NOT NULL DEFAULT '',
    root_model TEXT NOT NULL DEFAULT '',
    cwmp_version TEXT NOT NULL DEFAULT '',
    last_inform BIGINT,
    last_boot BIGINT,
    last_bootstrap BIGINT,
    last_source_ip TEXT NOT NULL DEFAULT '',
    last_retry_count INTEGER NOT NULL DEFAULT 0,
    connection_request_url TEXT NOT NULL DEFAULT '',
    cr_username TEXT,
    cr_password TEXT,
    cwmp_username TEXT,
    cwmp_ha1 TEXT,
    inform_params BLOB,
    discovered_at BIGINT,
    work_epoch BIGINT NOT NULL DEFAULT 0,
    work_seen_epoch BIGINT NOT NULL DEFAULT -1,
    session_owner TEXT,
    session_expires BIGINT,
    provisioned INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX devices_cwmp_username ON devices (cwmp_username);
CREATE INDEX devices_serial ON devices (serial_number);
CREATE INDEX devices_last_inform ON devices (last_inform);
CREATE INDEX devices_software_version ON devices (software_version);
CREATE INDEX devices_product_class ON devices (product_class);

CREATE TABLE device_tags (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_tag ON device_tags (tag, device_id);

-- The whole known parameter tree of a device, encoded compactly (see src/domain/params.rs):
-- one row per device, read and written whole, so a session costs O(1) round trips.
CREATE TABLE device_params (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    data BLOB NOT NULL,
    param_count INTEGER NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    rpc TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    command_key TEXT NOT NULL DEFAULT '',
    result TEXT,
    fault_code INTEGER,
    fault_string TEXT,
    fault_detail TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    created_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX tasks_device_status ON tasks (device_id, status, id);
CREATE INDEX tasks_status ON tasks (status, id);

CREATE TABLE faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    task_id BIGINT,
    code INTEGER NOT NULL,
    message TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX faults_device ON faults (device_id, id);

CREATE TABLE files (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    file_type TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    device_id TEXT REFERENCES devices (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX files_device ON files (device_id);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE session_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    source_ip TEXT NOT NULL,
    events TEXT NOT NULL,
    rpcs TEXT NOT NULL,
    faults TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX session_log_device ON session_log (device_id, id);
CREATE INDEX session_log_started ON session_log (started_at);

-- A CWMP session whose connection closed before it ended, so any node can resume it.
CREATE TABLE cwmp_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
