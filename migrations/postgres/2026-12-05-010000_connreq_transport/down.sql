ALTER TABLE device_connreq DROP COLUMN transport;
