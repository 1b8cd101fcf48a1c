DROP INDEX device_search_value;
CREATE INDEX device_search_value ON device_search (name, value, device_id);
