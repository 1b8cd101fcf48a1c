-- Ways for a phone to prove who it is besides its URL token: HTTP Digest credentials of its
-- own, and a one-time activation code; and the firmware version each fetch reported. Keep in
-- step with the other backend.

-- Digest user name (unique) and password (sealed with the secrets keyring).
ALTER TABLE phones ADD COLUMN digest_user TEXT;
ALTER TABLE phones ADD COLUMN digest_password TEXT;
-- SHA-256 (hex) of the activation code; the code itself is shown once and not kept.
ALTER TABLE phones ADD COLUMN activation_hash TEXT;
-- Until when the code works: before its first use, its expiry; after it, the end of the
-- activation window.
ALTER TABLE phones ADD COLUMN activation_expires BIGINT;
-- The source address that used the code first; only it may use it afterwards.
ALTER TABLE phones ADD COLUMN activation_source TEXT;
CREATE UNIQUE INDEX phones_digest_user ON phones (digest_user);
CREATE UNIQUE INDEX phones_activation_hash ON phones (activation_hash);
-- The firmware version the request reported (query string or User-Agent), per fetch.
ALTER TABLE phone_fetches ADD COLUMN firmware TEXT;
