DROP TABLE connreq_attempts;
DROP TABLE device_stun;
