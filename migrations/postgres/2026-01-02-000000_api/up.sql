-- Admin API: searchable parameter values, connection-request outcomes, search indexes.

-- Signature of the searchable values last written for the device (see device_search), so a
-- session whose Inform carries the same values writes nothing.
ALTER TABLE devices ADD COLUMN search_sig BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_oui ON devices (oui);
CREATE INDEX devices_manufacturer ON devices (manufacturer);
CREATE INDEX devices_model_name ON devices (model_name);
CREATE INDEX devices_hardware_version ON devices (hardware_version);

-- Parameter values the device list can filter on: Inform parameters and DeviceInfo.*, with
-- names relative to the root object (`DeviceInfo.SoftwareVersion`).
CREATE TABLE device_search (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (device_id, name)
);
CREATE INDEX device_search_value ON device_search (name, value, device_id);

-- The last connection request sent to each device and how it ended.
CREATE TABLE device_connreq (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL
);
