-- TR-111 (TR-069 Annex G): STUN credentials ferroacs gave a device and the public binding
-- its authenticated Binding Requests showed; and every connection-request attempt with its
-- transport and outcome. Keep in step with the other backend.

CREATE TABLE device_stun (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- STUNUsername as set on the device: how the STUN server finds the device.
    username TEXT NOT NULL UNIQUE,
    -- STUNPassword, sealed.
    password TEXT NOT NULL,
    -- The public address:port of the device's connection-request socket, from its last
    -- authenticated Binding Request carrying CONNECTION-REQUEST-BINDING; NULL until then.
    binding TEXT,
    -- When the binding took its current value.
    binding_at BIGINT,
    -- When an authenticated Binding Request last confirmed it (written at most once a minute).
    seen_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE connreq_attempts (
    id BIGSERIAL PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    -- http, udp
    transport TEXT NOT NULL,
    -- the outcome code of the transport (ok, unreachable, ...)
    outcome TEXT NOT NULL,
    message TEXT NOT NULL,
    -- When the device's Inform with "6 CONNECTION REQUEST" arrived after it.
    confirmed_at BIGINT
);

CREATE INDEX connreq_attempts_device ON connreq_attempts (device_id, id);
