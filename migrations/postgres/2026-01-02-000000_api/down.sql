DROP TABLE device_connreq;
DROP TABLE device_search;
DROP INDEX devices_hardware_version;
DROP INDEX devices_model_name;
DROP INDEX devices_manufacturer;
DROP INDEX devices_oui;
ALTER TABLE devices DROP COLUMN search_sig;
