DROP TABLE device_preset_state;
DROP TABLE presets;
DROP TABLE voip_lines;
ALTER TABLE devices DROP COLUMN preset_events;
