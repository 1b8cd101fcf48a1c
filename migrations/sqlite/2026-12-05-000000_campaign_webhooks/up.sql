-- Delivery state of a campaign's webhook; a row only for campaigns that have one. The
-- timeline entries up to `event_cursor` are handled; `attempts` failed tries of the next one,
-- tried again no earlier than `retry_at`.
CREATE TABLE campaign_webhooks (
    campaign_id BIGINT PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    event_cursor BIGINT NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at BIGINT,
    delivered BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
