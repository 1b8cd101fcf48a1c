-- Upgrade paths with intermediate images: how far a campaign member got along its path.
-- step: images confirmed so far; steps: images on its path (the final one included);
-- step_version: the version the image it runs or gets next leads to ('' = target_version).
ALTER TABLE campaign_members ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaign_members ADD COLUMN steps INTEGER NOT NULL DEFAULT 1;
ALTER TABLE campaign_members ADD COLUMN step_version TEXT NOT NULL DEFAULT '';
