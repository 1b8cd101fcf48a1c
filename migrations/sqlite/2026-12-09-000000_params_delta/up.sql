-- What sessions learnt of a device since its whole tree (`device_params`) was last written,
-- encoded like the tree; null when there is nothing. Readers lay it over the tree. A session
-- that learnt a few values writes them here, in the device row its end updates anyway,
-- instead of reading and rewriting the whole tree. Keep in step with the other backend.
ALTER TABLE devices ADD COLUMN params_delta BLOB;
