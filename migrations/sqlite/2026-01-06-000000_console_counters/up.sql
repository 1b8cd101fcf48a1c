-- Counters the console's overview reads instead of scanning devices, session_log and faults,
-- kept exact by triggers in the same transaction as the row they count.

-- Devices per (product class, software version); their sum is the number of devices.
CREATE TABLE device_version_counts (
    product_class TEXT NOT NULL,
    software_version TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (product_class, software_version)
);
INSERT INTO device_version_counts (product_class, software_version, n)
    SELECT product_class, software_version, COUNT(*) FROM devices
    GROUP BY product_class, software_version;

CREATE TRIGGER device_version_counts_insert AFTER INSERT ON devices
BEGIN
    INSERT INTO device_version_counts (product_class, software_version, n)
        VALUES (NEW.product_class, NEW.software_version, 1)
        ON CONFLICT (product_class, software_version) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER device_version_counts_delete AFTER DELETE ON devices
BEGIN
    UPDATE device_version_counts SET n = n - 1
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version;
    DELETE FROM device_version_counts
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version AND n <= 0;
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

-- Sessions started per minute (minute = started_at / 60000). Pruning the session log does
-- not lower them: a session that happened is counted; old minutes are pruned on their own.
CREATE TABLE session_minutes (
    minute BIGINT PRIMARY KEY NOT NULL,
    n BIGINT NOT NULL
);
INSERT INTO session_minutes (minute, n)
    SELECT started_at / 60000, COUNT(*) FROM session_log GROUP BY started_at / 60000;
CREATE TRIGGER session_minutes_insert AFTER INSERT ON session_log
BEGIN
    INSERT INTO session_minutes (minute, n) VALUES (NEW.started_at / 60000, 1)
        ON CONFLICT (minute) DO UPDATE SET n = n + 1;
END;

-- Faults per (minute, code); clearing a fault lowers its minute's count.
CREATE TABLE fault_minutes (
    minute BIGINT NOT NULL,
    code INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (minute, code)
);
INSERT INTO fault_minutes (minute, code, n)
    SELECT created_at / 60000, code, COUNT(*) FROM faults GROUP BY created_at / 60000, code;
CREATE TRIGGER fault_minutes_insert AFTER INSERT ON faults
BEGIN
    INSERT INTO fault_minutes (minute, code, n) VALUES (NEW.created_at / 60000, NEW.code, 1)
        ON CONFLICT (minute, code) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER fault_minutes_delete AFTER DELETE ON faults
BEGIN
    UPDATE fault_minutes SET n = n - 1 WHERE minute = OLD.created_at / 60000 AND code = OLD.code;
END;

-- Devices that never completed discovery, and devices that never informed: small sets,
-- counted from partial indexes.
CREATE INDEX devices_undiscovered ON devices (id) WHERE discovered_at IS NULL;
CREATE INDEX devices_never_informed ON devices (id) WHERE last_inform IS NULL;
