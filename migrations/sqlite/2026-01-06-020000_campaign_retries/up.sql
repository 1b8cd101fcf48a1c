-- A campaign member waiting to be tried again (pacing.retries) starts no earlier than this.
ALTER TABLE campaign_members ADD COLUMN retry_at BIGINT;
