CREATE INDEX devices_last_inform ON devices (last_inform);
CREATE INDEX devices_software_version ON devices (software_version);
CREATE INDEX devices_product_class ON devices (product_class);
CREATE INDEX devices_serial ON devices (serial_number);
