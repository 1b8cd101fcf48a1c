-- The value index without device_id: B-tree deduplication (PostgreSQL 13+) then stores each
-- (name, value) shared by many devices (model, software version, OUI, ...) once, with a list
-- of row pointers, instead of once per device. Searches still look up (name, value) here and
-- read device_id from the table.
DROP INDEX device_search_value;
CREATE INDEX device_search_value ON device_search (name, value);
