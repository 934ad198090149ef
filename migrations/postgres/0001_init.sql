-- tower-m2m-auth: service accounts, app passwords, replay cache, revoked tokens.
-- The caches hold Unix seconds, compared with the instances' clocks (which
-- also judge token expiry), not the database's.

CREATE TABLE m2m_service_accounts (
    id       TEXT    NOT NULL PRIMARY KEY,
    uuid     UUID    NOT NULL UNIQUE,
    username TEXT    NOT NULL UNIQUE,
    name     TEXT    NOT NULL,
    active   BOOLEAN NOT NULL DEFAULT TRUE
);

-- Only the SHA-256 digest of a token is stored, never the token.
CREATE TABLE m2m_app_passwords (
    digest     BYTEA       NOT NULL PRIMARY KEY CHECK (octet_length(digest) = 32),
    account_id TEXT        NOT NULL REFERENCES m2m_service_accounts (id) ON DELETE CASCADE,
    expires    TIMESTAMPTZ,
    created    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX m2m_app_passwords_account_id ON m2m_app_passwords (account_id);

-- Keys (jti digests) of single-use input JWTs, each until its token expires.
CREATE TABLE m2m_replay_cache (
    key     TEXT   NOT NULL PRIMARY KEY,
    expires BIGINT NOT NULL
);

CREATE INDEX m2m_replay_cache_expires ON m2m_replay_cache (expires);

-- Ids of revoked access tokens, each until the token expires.
CREATE TABLE m2m_revoked_tokens (
    jti     TEXT   NOT NULL PRIMARY KEY,
    expires BIGINT NOT NULL
);

CREATE INDEX m2m_revoked_tokens_expires ON m2m_revoked_tokens (expires);
