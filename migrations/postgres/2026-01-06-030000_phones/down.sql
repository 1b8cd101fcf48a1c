DROP TABLE phone_uploads;
DROP INDEX phone_fetches_mac;
DROP TABLE phone_fetches;
DROP TABLE phones;
DROP TABLE phone_profiles;
