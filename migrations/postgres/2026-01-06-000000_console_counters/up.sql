-- Counters the console's overview reads instead of scanning devices, session_log and faults,
-- kept exact by triggers in the same transaction as the rows they count. Inserts and
-- deletes are counted per statement (transition tables), so a bulk insert updates each
-- counter row once; a device's version change per row, only when it really changed.

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

CREATE FUNCTION device_version_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_version_counts AS c (product_class, software_version, n)
        SELECT product_class, software_version, COUNT(*) FROM new_rows
        GROUP BY product_class, software_version
        ON CONFLICT (product_class, software_version) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE TRIGGER device_version_counts_insert AFTER INSERT ON devices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION device_version_counts_insert();

CREATE FUNCTION device_version_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE device_version_counts c SET n = c.n - o.k
        FROM (SELECT product_class, software_version, COUNT(*) AS k FROM old_rows
              GROUP BY product_class, software_version) o
        WHERE c.product_class = o.product_class AND c.software_version = o.software_version;
    DELETE FROM device_version_counts WHERE n <= 0;
    RETURN NULL;
END $$;
CREATE TRIGGER device_version_counts_delete AFTER DELETE ON devices
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION device_version_counts_delete();

CREATE FUNCTION device_version_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE device_version_counts SET n = n - 1
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version;
    DELETE FROM device_version_counts
        WHERE product_class = OLD.product_class AND software_version = OLD.software_version
          AND n <= 0;
    INSERT INTO device_version_counts AS c (product_class, software_version, n)
        VALUES (NEW.product_class, NEW.software_version, 1)
        ON CONFLICT (product_class, software_version) DO UPDATE SET n = c.n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER device_version_counts_update AFTER UPDATE OF product_class, software_version
    ON devices FOR EACH ROW
    WHEN (OLD.product_class IS DISTINCT FROM NEW.product_class
          OR OLD.software_version IS DISTINCT FROM NEW.software_version)
    EXECUTE FUNCTION device_version_counts_update();

-- Sessions started per minute (minute = started_at / 60000). Pruning the session log does
-- not lower them: a session that happened is counted; old minutes are pruned on their own.
CREATE TABLE session_minutes (
    minute BIGINT PRIMARY KEY NOT NULL,
    n BIGINT NOT NULL
);
INSERT INTO session_minutes (minute, n)
    SELECT started_at / 60000, COUNT(*) FROM session_log GROUP BY started_at / 60000;
CREATE FUNCTION session_minutes_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_minutes AS c (minute, n)
        SELECT started_at / 60000, COUNT(*) FROM new_rows GROUP BY started_at / 60000
        ON CONFLICT (minute) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE TRIGGER session_minutes_insert AFTER INSERT ON session_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION session_minutes_insert();

-- Faults per (minute, code); clearing a fault lowers its minute's count.
CREATE TABLE fault_minutes (
    minute BIGINT NOT NULL,
    code INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (minute, code)
);
INSERT INTO fault_minutes (minute, code, n)
    SELECT created_at / 60000, code, COUNT(*) FROM faults GROUP BY created_at / 60000, code;
CREATE FUNCTION fault_minutes_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fault_minutes AS c (minute, code, n)
        SELECT created_at / 60000, code, COUNT(*) FROM new_rows
        GROUP BY created_at / 60000, code
        ON CONFLICT (minute, code) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE TRIGGER fault_minutes_insert AFTER INSERT ON faults
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION fault_minutes_insert();
CREATE FUNCTION fault_minutes_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE fault_minutes c SET n = c.n - o.k
        FROM (SELECT created_at / 60000 AS minute, code, COUNT(*) AS k FROM old_rows
              GROUP BY created_at / 60000, code) o
        WHERE c.minute = o.minute AND c.code = o.code;
    RETURN NULL;
END $$;
CREATE TRIGGER fault_minutes_delete AFTER DELETE ON faults
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION fault_minutes_delete();

-- Devices that never completed discovery, and devices that never informed: small sets,
-- counted from partial indexes.
CREATE INDEX devices_undiscovered ON devices (id) WHERE discovered_at IS NULL;
CREATE INDEX devices_never_informed ON devices (id) WHERE last_inform IS NULL;
