-- SQLite stores its small key-ordered tables WITHOUT ROWID from here on (see that backend's
-- migration of the same name). PostgreSQL keeps every table as a heap beside its primary
-- key's index, and has no such choice: nothing changes here. The migration exists so that
-- both backends list the same ones.
SELECT 1;
