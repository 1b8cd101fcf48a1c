-- Every index on `devices` whose columns a session writes is rewritten by every Inform
-- (SQLite rewrites the entries of every index naming a column of the SET list; on
-- PostgreSQL an UPDATE that changes an indexed column writes an entry into every index).
-- These four are prefixes of the sort indexes, which serve the same filters:
--   (software_version), (product_class), (serial_number): the sort indexes
--     (column, id) lead with the same column;
--   (last_inform): filters on last_inform are written on COALESCE(last_inform, -1),
--     the leading expression of devices_sort_last_inform.
DROP INDEX devices_last_inform;
DROP INDEX devices_software_version;
DROP INDEX devices_product_class;
DROP INDEX devices_serial;
