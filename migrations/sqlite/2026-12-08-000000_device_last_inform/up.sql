-- The last-inform order and filters (console sort, `last_inform < …`, the overview's overdue
-- and never-informed counts) read a narrow copy of devices.last_inform, kept by triggers in
-- the same statement as the device row. No index of `devices` then names a column that
-- every Inform changes (on PostgreSQL the device row is then updated in place without
-- touching its indexes); SQLite rewrites this small row and its sort index entry instead of
-- the device row's index entries.
CREATE TABLE device_last_inform (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    last_inform BIGINT
) WITHOUT ROWID;
INSERT INTO device_last_inform (device_id, last_inform) SELECT id, last_inform FROM devices;
CREATE INDEX device_last_inform_sort ON device_last_inform (COALESCE(last_inform, -1), device_id);
CREATE INDEX device_last_inform_never ON device_last_inform (device_id) WHERE last_inform IS NULL;

CREATE TRIGGER device_last_inform_insert AFTER INSERT ON devices
BEGIN
    INSERT INTO device_last_inform (device_id, last_inform) VALUES (NEW.id, NEW.last_inform);
END;

CREATE TRIGGER device_last_inform_update AFTER UPDATE OF last_inform ON devices
WHEN OLD.last_inform IS NOT NEW.last_inform
BEGIN
    UPDATE device_last_inform SET last_inform = NEW.last_inform WHERE device_id = NEW.id;
END;

DROP INDEX devices_sort_last_inform;
DROP INDEX devices_never_informed;
