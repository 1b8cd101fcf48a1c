-- Per-device CWMP credentials ferroacs issued to a device that logged in with the shared
-- default ones (trust on first use). `state`: `issued` (sent, the device has not logged in
-- with them yet; `ha1` is the sealed HA1), `confirmed` (the device logged in with them: they
-- moved to devices.cwmp_username/cwmp_ha1) or `gave_up` (the device refused or ignored them
-- `attempts` times; it keeps the shared credentials until an operator resets it).
CREATE TABLE issued_credentials (
    device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    ha1 TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    confirmed_at BIGINT
);
CREATE INDEX issued_credentials_username ON issued_credentials (username);
