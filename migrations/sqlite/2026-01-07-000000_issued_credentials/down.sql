DROP TABLE issued_credentials;
