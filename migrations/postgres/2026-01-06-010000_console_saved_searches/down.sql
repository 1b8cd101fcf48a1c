DROP INDEX devices_sort_serial;
DROP INDEX devices_sort_product_class;
DROP INDEX devices_sort_software_version;
DROP INDEX devices_sort_last_inform;
DROP INDEX saved_searches_user_name;
DROP TABLE saved_searches;
