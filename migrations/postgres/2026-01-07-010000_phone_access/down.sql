ALTER TABLE phone_fetches DROP COLUMN firmware;
DROP INDEX phones_activation_hash;
DROP INDEX phones_digest_user;
ALTER TABLE phones DROP COLUMN activation_source;
ALTER TABLE phones DROP COLUMN activation_expires;
ALTER TABLE phones DROP COLUMN activation_hash;
ALTER TABLE phones DROP COLUMN digest_password;
ALTER TABLE phones DROP COLUMN digest_user;
