-- tower-m2m-auth: a change counter for the store's read cache. Every insert,
-- update or delete of an account, an app password or a binding (by this
-- crate, another instance, or by hand) bumps it in the same transaction and
-- announces the new value on the channel `m2m_changes` (payload: the
-- table's schema, a space, the value), delivered to every listening
-- instance when the transaction commits. An instance serves a cached lookup
-- only while it is listening and has heard no change since the lookup.

CREATE TABLE m2m_changes (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
);

INSERT INTO m2m_changes (id, value) VALUES (1, 0);

CREATE FUNCTION m2m_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bumped BIGINT;
BEGIN
    EXECUTE format('UPDATE %I.m2m_changes SET value = value + 1 WHERE id = 1 RETURNING value',
        TG_TABLE_SCHEMA) INTO bumped;
    PERFORM pg_notify('m2m_changes', TG_TABLE_SCHEMA || ' ' || bumped);
    RETURN NULL;
END
$$;

CREATE TRIGGER m2m_service_accounts_changed
    AFTER INSERT OR UPDATE OR DELETE ON m2m_service_accounts
    FOR EACH ROW EXECUTE FUNCTION m2m_changed();
CREATE TRIGGER m2m_app_passwords_changed
    AFTER INSERT OR UPDATE OR DELETE ON m2m_app_passwords
    FOR EACH ROW EXECUTE FUNCTION m2m_changed();
CREATE TRIGGER m2m_bindings_changed
    AFTER INSERT OR UPDATE OR DELETE ON m2m_bindings
    FOR EACH ROW EXECUTE FUNCTION m2m_changed();

-- TRUNCATE deletes without row triggers: announced once per statement.
CREATE TRIGGER m2m_service_accounts_truncated AFTER TRUNCATE ON m2m_service_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION m2m_changed();
CREATE TRIGGER m2m_app_passwords_truncated AFTER TRUNCATE ON m2m_app_passwords
    FOR EACH STATEMENT EXECUTE FUNCTION m2m_changed();
CREATE TRIGGER m2m_bindings_truncated AFTER TRUNCATE ON m2m_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION m2m_changed();
