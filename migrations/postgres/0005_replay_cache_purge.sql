-- tower-m2m-auth: nothing changes on PostgreSQL. On SQLite this migration
-- drops the replay cache's index on its expiry, and the purge walks the
-- keys a chunk at a time instead. On PostgreSQL that walk costs the writer
-- more than the index costs each write: measured, 12 % fewer single-use
-- requests per second with the walk.

SELECT 1;
