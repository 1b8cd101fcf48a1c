-- Signed links that may be used once (device Upload URLs): the ones already used, until
-- they expire, so a second use is refused on every node.
CREATE TABLE used_links (
    id TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_links_expires ON used_links (expires_at);
