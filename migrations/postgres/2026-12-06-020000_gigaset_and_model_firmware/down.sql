DROP TABLE phone_model_firmware;
DROP TABLE phone_file_stamps;
