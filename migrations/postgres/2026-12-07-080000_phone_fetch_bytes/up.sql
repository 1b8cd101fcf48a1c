-- The bytes a fetch delivered (the file's size; for a TFTP transfer the bytes the phone
-- acknowledged), null when nothing was served. Keep in step with the other backend.
ALTER TABLE phone_fetches ADD COLUMN bytes BIGINT;
-- Fetches that named no known phone are listed by source address.
CREATE INDEX phone_fetches_source ON phone_fetches (source, id);
