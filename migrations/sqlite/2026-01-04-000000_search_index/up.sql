-- PostgreSQL only (its value index drops device_id to benefit from B-tree deduplication);
-- SQLite keeps the covering (name, value, device_id) index, having no deduplication.
SELECT 1;
