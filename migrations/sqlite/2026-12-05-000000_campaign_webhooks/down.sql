DROP TABLE campaign_webhooks;
