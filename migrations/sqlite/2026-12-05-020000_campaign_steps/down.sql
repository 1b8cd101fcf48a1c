ALTER TABLE campaign_members DROP COLUMN step_version;
ALTER TABLE campaign_members DROP COLUMN steps;
ALTER TABLE campaign_members DROP COLUMN step;
