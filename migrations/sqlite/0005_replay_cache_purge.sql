-- tower-m2m-auth: the replay cache without an index on its expiry. Every
-- single-use write updated it beside the key's own index, only for the
-- purge, which now walks the keys a chunk at a time (the key's index
-- serves it) instead of looking the expired rows up.

DROP INDEX m2m_replay_cache_expires;
