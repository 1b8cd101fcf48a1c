-- The transport (http, udp) of the last connection request sent to each device.
ALTER TABLE device_connreq ADD COLUMN transport TEXT;
