DROP TABLE phone_file_stamps;
