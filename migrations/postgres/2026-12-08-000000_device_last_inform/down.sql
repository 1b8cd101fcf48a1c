ALTER TABLE devices RESET (fillfactor);
CREATE INDEX devices_never_informed ON devices (id) WHERE last_inform IS NULL;
CREATE INDEX devices_sort_last_inform ON devices (COALESCE(last_inform, -1), id);
DROP TRIGGER device_last_inform_insert ON devices;
DROP FUNCTION device_last_inform_insert();
DROP TABLE device_last_inform;
