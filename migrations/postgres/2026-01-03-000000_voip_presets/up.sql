-- VoIP lines (SIP accounts assigned to line N of a device) and presets (named desired
-- states). Keep in step with the other backend.

-- The events at which the presets that matched the device at its last evaluation apply
-- (comma-separated: bootstrap,boot,periodic,value_change), so a periodic session knows without
-- a query whether presets must be looked at.
ALTER TABLE devices ADD COLUMN preset_events TEXT NOT NULL DEFAULT '';

CREATE TABLE voip_lines (
    id BIGSERIAL PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    line INTEGER NOT NULL,
    -- The account without its password, as JSON (see src/domain/voip.rs).
    account TEXT NOT NULL,
    -- Write-only through the API; kept so it can be pushed to the device.
    password TEXT,
    -- Bumped on every change; applied_revision is the one the device accepted.
    revision BIGINT NOT NULL,
    applied_revision BIGINT NOT NULL DEFAULT 0,
    -- pending, applied, registered, registering, error, disabled, unknown, fault
    status TEXT NOT NULL DEFAULT 'pending',
    -- The raw status the device reported (Line.Status / SIP.Client.Status).
    device_status TEXT,
    -- Where the account was written on the device: layout and object paths, JSON.
    mapping TEXT,
    fault TEXT,
    status_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (device_id, line)
);

CREATE TABLE presets (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    filter TEXT NOT NULL DEFAULT '',
    priority INTEGER NOT NULL DEFAULT 0,
    -- Comma-separated: bootstrap, boot, periodic, value_change.
    events TEXT NOT NULL DEFAULT '',
    -- Values, lines, periodic-inform settings and firmware version, JSON.
    spec TEXT NOT NULL,
    -- A number from the global presets counter, bumped on each change of this preset.
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Per device: which preset set which value, and values the device refused (with the preset
-- revision they were refused at, so they are not resent until the preset changes).
CREATE TABLE device_preset_state (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    applied TEXT NOT NULL,
    refused TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
