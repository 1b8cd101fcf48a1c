-- The last-inform order and filters (console sort, `last_inform < …`, the overview's overdue
-- and never-informed counts) read a narrow copy of devices.last_inform, kept by triggers in
-- the same statement as the device row. No index of `devices` then names a column that
-- every Inform changes, so PostgreSQL updates the device row in place (a HOT update: no
-- entry in any of its indexes) and the Inform writes index entries only here: the primary
-- key's is not rewritten either, the sort index's is. Before, every Inform added an entry
-- to each of the dozen indexes of `devices`.
CREATE TABLE device_last_inform (
    device_id TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    last_inform BIGINT
);
INSERT INTO device_last_inform (device_id, last_inform) SELECT id, last_inform FROM devices;
CREATE INDEX device_last_inform_sort ON device_last_inform (COALESCE(last_inform, -1), device_id);
CREATE INDEX device_last_inform_never ON device_last_inform (device_id) WHERE last_inform IS NULL;

CREATE FUNCTION device_last_inform_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_last_inform (device_id, last_inform) SELECT id, last_inform FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER device_last_inform_insert AFTER INSERT ON devices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION device_last_inform_insert();

CREATE FUNCTION device_last_inform_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE device_last_inform SET last_inform = NEW.last_inform WHERE device_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER device_last_inform_update AFTER UPDATE OF last_inform ON devices
    FOR EACH ROW WHEN (OLD.last_inform IS DISTINCT FROM NEW.last_inform)
    EXECUTE FUNCTION device_last_inform_update();

DROP INDEX devices_sort_last_inform;
DROP INDEX devices_never_informed;

-- Room on each page for the next version of a row: a HOT update needs it on the same page.
ALTER TABLE devices SET (fillfactor = 80);
