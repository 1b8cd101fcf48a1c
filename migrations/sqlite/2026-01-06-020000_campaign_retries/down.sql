ALTER TABLE campaign_members DROP COLUMN retry_at;
