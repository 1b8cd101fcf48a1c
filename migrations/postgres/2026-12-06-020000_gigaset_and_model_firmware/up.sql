-- The stamp of a phone's file content (Gigaset's VERSION): it changes only when the rendered
-- content does, so a phone skips a file it has applied. Keep in step with the other backend.
CREATE TABLE phone_file_stamps (
    mac TEXT NOT NULL,
    file TEXT NOT NULL,
    -- SHA-256 (hex) of the content rendered without the stamp.
    digest TEXT NOT NULL,
    -- UTC ms the stamp shows (a whole minute).
    stamp BIGINT NOT NULL,
    PRIMARY KEY (mac, file)
);

-- The firmware every phone of a model gets (a file of the file store and its version),
-- unless its profile or its own settings name another.
CREATE TABLE phone_model_firmware (
    vendor TEXT NOT NULL,
    model TEXT NOT NULL,
    file_id TEXT NOT NULL,
    version TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (vendor, model)
);
