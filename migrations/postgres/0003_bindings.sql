-- tower-m2m-auth: application bindings. A service account may get tokens at
-- an application only if bound to it (unless the application lets every
-- account in), with at most the scopes listed here: space-separated RFC 6749
-- scope-tokens, which never contain spaces. Input-JWT identities are never
-- bound. A binding goes with its account.

CREATE TABLE m2m_bindings (
    account_id TEXT NOT NULL REFERENCES m2m_service_accounts (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    PRIMARY KEY (account_id, client_id)
);
