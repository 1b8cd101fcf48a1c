DROP TABLE campaign_events;
DROP TABLE campaign_members;
DROP TABLE campaigns;
DROP TABLE scheduler_lease;
