-- tower-m2m-auth: the instances listening for changes (migration 0004), so
-- that an admin change returns only once every one of them has acted on it.
-- Each listening connection keeps one row, by its backend's pid: `heard`, the
-- highest counter value it has acted on, and `renewed`, when it last wrote
-- the row. The writer of a change asks the listeners to answer
-- (`<schema> sync:<value>` on m2m_changes, delivered after the change's own
-- announcement) and waits until every row of a live listener backend has
-- heard the value, or has gone unrenewed for longer than a listener serves
-- from its cache without hearing anything.

CREATE TABLE m2m_listeners (
    pid     INTEGER     NOT NULL PRIMARY KEY,
    heard   BIGINT      NOT NULL,
    renewed TIMESTAMPTZ NOT NULL
);
