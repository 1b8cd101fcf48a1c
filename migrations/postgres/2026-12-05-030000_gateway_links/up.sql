-- TR-111 Part 1 (device-gateway association): which device sits behind which gateway, as
-- the gateway's ManageableDevice table and the device's GatewayInfo say. Either side may be
-- a device ferroacs does not manage, so neither id references devices. Keep in step with
-- the other backend.

CREATE TABLE gateway_links (
    -- The gateway's device id (OUI-ProductClass-Serial, as computed from an Inform).
    gateway_id TEXT NOT NULL,
    -- The LAN device's device id.
    device_id TEXT NOT NULL,
    -- When the gateway's ManageableDevice table last listed the device; NULL: it does not.
    listed_at BIGINT,
    -- When the device's GatewayInfo last named the gateway; NULL: it does not.
    claimed_at BIGINT,
    -- The Host of the gateway's ManageableDevice row (references to its Hosts table).
    host TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (gateway_id, device_id)
);

CREATE INDEX gateway_links_device ON gateway_links (device_id);
