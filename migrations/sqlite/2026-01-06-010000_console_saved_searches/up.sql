-- Searches an operator saved on the device list (the list's query string: query, columns,
-- order), private to each user.
CREATE TABLE saved_searches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    query TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX saved_searches_user_name ON saved_searches (user_id, name);

-- The device list sorts by these columns, the id breaking ties: one index walks each order
-- from the cursor, so a page costs the same at any depth and with any number of ties.
CREATE INDEX devices_sort_last_inform ON devices (COALESCE(last_inform, -1), id);
CREATE INDEX devices_sort_software_version ON devices (software_version, id);
CREATE INDEX devices_sort_product_class ON devices (product_class, id);
CREATE INDEX devices_sort_serial ON devices (serial_number, id);
