DROP INDEX faults_created;
DROP TABLE console_sessions;
