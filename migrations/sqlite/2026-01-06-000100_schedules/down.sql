DROP INDEX files_device_type;
DROP TABLE schedules;
