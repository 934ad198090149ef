-- tower-m2m-auth: a change counter for the store's read cache. Every insert,
-- update or delete of an account, an app password or a binding (by this
-- crate, another process, or by hand) bumps it in the same transaction; a
-- cached lookup is valid only while the counter still holds the value it was
-- read under.

CREATE TABLE m2m_changes (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);

INSERT INTO m2m_changes (id, value) VALUES (1, 0);

CREATE TRIGGER m2m_service_accounts_inserted AFTER INSERT ON m2m_service_accounts
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER m2m_service_accounts_updated AFTER UPDATE ON m2m_service_accounts
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER m2m_service_accounts_deleted AFTER DELETE ON m2m_service_accounts
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER m2m_app_passwords_inserted AFTER INSERT ON m2m_app_passwords
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER m2m_app_passwords_updated AFTER UPDATE ON m2m_app_passwords
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER m2m_app_passwords_deleted AFTER DELETE ON m2m_app_passwords
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER m2m_bindings_inserted AFTER INSERT ON m2m_bindings
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER m2m_bindings_updated AFTER UPDATE ON m2m_bindings
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER m2m_bindings_deleted AFTER DELETE ON m2m_bindings
BEGIN UPDATE m2m_changes SET value = value + 1 WHERE id = 1; END;
