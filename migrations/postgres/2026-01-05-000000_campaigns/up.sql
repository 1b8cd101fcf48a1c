-- Scheduler leader lease, firmware/bulk campaigns with per-device state and timeline.

-- One row per lease name ('scheduler'): the node that holds it runs campaign pacing and
-- scheduled jobs until expires_at; it renews the row on every tick.
CREATE TABLE scheduler_lease (
    name TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL
);

-- A campaign: the operator's specification (JSON, see domain::campaigns::CampaignSpec) and
-- the progress the scheduler keeps.
CREATE TABLE campaigns (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    current_wave INTEGER NOT NULL DEFAULT 0,
    wave_started_at BIGINT,
    awaiting_approval INTEGER NOT NULL DEFAULT 0,
    -- Stop rules count outcomes finished at or after this time (reset by resume).
    counted_since BIGINT NOT NULL DEFAULT 0,
    reason TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX campaigns_state ON campaigns (state, id);

-- Per-device state of a campaign. A member becomes in_progress in the same transaction that
-- creates its task, so a crash never starts a device twice nor forgets one.
CREATE TABLE campaign_members (
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    wave INTEGER NOT NULL,
    -- Start order inside the campaign (a shuffle, so each wave mixes models).
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    task_id BIGINT,
    from_version TEXT NOT NULL DEFAULT '',
    target_version TEXT NOT NULL DEFAULT '',
    started_at BIGINT,
    finished_at BIGINT,
    last_error TEXT,
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX campaign_members_state ON campaign_members (campaign_id, state, wave, seq);
CREATE INDEX campaign_members_finished ON campaign_members (campaign_id, finished_at);
CREATE INDEX campaign_members_device ON campaign_members (device_id, state);

-- The campaign timeline: state changes, waves, pauses and why, per-device outcomes.
CREATE TABLE campaign_events (
    id BIGSERIAL PRIMARY KEY,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    device_id TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX campaign_events_campaign ON campaign_events (campaign_id, id);
CREATE INDEX campaign_events_device ON campaign_events (campaign_id, device_id, id);
