DROP INDEX phone_fetches_source;
ALTER TABLE phone_fetches DROP COLUMN bytes;
