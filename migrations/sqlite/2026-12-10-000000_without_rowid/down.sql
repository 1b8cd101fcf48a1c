-- The same tables as rowid tables again, with their triggers.
DROP TRIGGER device_version_counts_insert;
DROP TRIGGER device_version_counts_delete;
DROP TRIGGER device_version_counts_update;
DROP TRIGGER session_minutes_insert;
DROP TRIGGER fault_minutes_insert;
DROP TRIGGER fault_minutes_delete;

CREATE TABLE device_search_new (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (device_id, name)
);
INSERT INTO device_search_new (device_id, name, value)
    SELECT device_id, name, value FROM device_search;
DROP TABLE device_search;
ALTER TABLE device_search_new RENAME TO device_search;
CREATE INDEX device_search_value ON device_search (name, value, device_id);

CREATE TABLE issued_credentials_new (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    ha1 TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    confirmed_at BIGINT
);
INSERT INTO issued_credentials_new
    (device_id, username, ha1, state, attempts, reason, issued_at, confirmed_at)
    SELECT device_id, username, ha1, state, attempts, reason, issued_at, confirmed_at
    FROM issued_credentials;
DROP TABLE issued_credentials;
ALTER TABLE issued_credentials_new RENAME TO issued_credentials;
CREATE INDEX issued_credentials_username ON issued_credentials (username);

CREATE TABLE device_version_counts_new (
    product_class TEXT NOT NULL,
    software_version TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (product_class, software_version)
);
INSERT INTO device_version_counts_new (product_class, software_version, n)
    SELECT product_class, software_version, n FROM device_version_counts;
DROP TABLE device_version_counts;
ALTER TABLE device_version_counts_new RENAME TO device_version_counts;

CREATE TABLE session_minutes_new (
    minute BIGINT PRIMARY KEY NOT NULL,
    n BIGINT NOT NULL
);
INSERT INTO session_minutes_new (minute, n) SELECT minute, n FROM session_minutes;
DROP TABLE session_minutes;
ALTER TABLE session_minutes_new RENAME TO session_minutes;

CREATE TABLE fault_minutes_new (
    minute BIGINT NOT NULL,
    code INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (minute, code)
);
INSERT INTO fault_minutes_new (minute, code, n) SELECT minute, code, n FROM fault_minutes;
DROP TABLE fault_minutes;
ALTER TABLE fault_minutes_new RENAME TO fault_minutes;

-- The triggers, as they were.
CREATE TRIGGER device_version_counts_delete AFTER DELETE ON devices
BEGIN
    UPDATE device_version_counts SET n = n - 1
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version;
    DELETE FROM device_version_counts
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version AND n <= 0;
END;
CREATE TRIGGER device_version_counts_insert AFTER INSERT ON devices
BEGIN
    INSERT INTO device_version_counts (product_class, software_version, n)
        VALUES (NEW.product_class, NEW.software_version, 1)
        ON CONFLICT (product_class, software_version) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER device_version_counts_update AFTER UPDATE OF product_class, software_version ON devices
WHEN OLD.product_class IS NOT NEW.product_class OR OLD.software_version IS NOT NEW.software_version
BEGIN
    UPDATE device_version_counts SET n = n - 1
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version;
    DELETE FROM device_version_counts
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version AND n <= 0;
    INSERT INTO device_version_counts (product_class, software_version, n)
        VALUES (NEW.product_class, NEW.software_version, 1)
        ON CONFLICT (product_class, software_version) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER fault_minutes_delete AFTER DELETE ON faults
BEGIN
    UPDATE fault_minutes SET n = n - 1 WHERE minute = OLD.created_at / 60000 AND code = OLD.code;
END;
CREATE TRIGGER fault_minutes_insert AFTER INSERT ON faults
BEGIN
    INSERT INTO fault_minutes (minute, code, n) VALUES (NEW.created_at / 60000, NEW.code, 1)
        ON CONFLICT (minute, code) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER session_minutes_insert AFTER INSERT ON session_log
BEGIN
    INSERT INTO session_minutes (minute, n) VALUES (NEW.started_at / 60000, 1)
        ON CONFLICT (minute) DO UPDATE SET n = n + 1;
END;
