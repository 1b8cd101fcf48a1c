-- Scheduled jobs: a recurring task or config backup for the devices a query matches, fired
-- by the scheduler leader at each time of a cron expression in an IANA time zone.
CREATE TABLE schedules (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- The operator's specification (JSON, see domain::schedules::ScheduleSpec).
    spec TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    -- The next fire time (ms since the epoch); NULL when disabled or the cron never fires
    -- again. The leader claims a fire by moving it forward with a conditional UPDATE.
    next_fire_at BIGINT,
    last_fire_at BIGINT,
    last_result TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at);
-- Backups of one device by type, newest first (keeping the last N per device).
CREATE INDEX files_device_type ON files (device_id, file_type, created_at);
