DROP TABLE gateway_links;
