DROP TABLE used_links;
