-- tower-m2m-auth: nothing changes on SQLite. On PostgreSQL this migration
-- adds the table of instances listening for changes, whose answers an admin
-- change waits for; every SQLite instance reads the change counter itself.

SELECT 1;
