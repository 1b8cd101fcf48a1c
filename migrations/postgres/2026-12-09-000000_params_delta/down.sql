ALTER TABLE devices DROP COLUMN params_delta;
