-- tower-m2m-auth: automatic service accounts of input-JWT identities.
-- Such an account is keyed by its id, derived from the JWT's (iss, sub); these
-- columns say which identity it is and until when (the newest exp seen).
-- NULL for every other account.

ALTER TABLE m2m_service_accounts
    ADD COLUMN external_issuer  TEXT,
    ADD COLUMN external_subject TEXT,
    ADD COLUMN expires          TIMESTAMPTZ;

CREATE UNIQUE INDEX m2m_service_accounts_external
    ON m2m_service_accounts (external_issuer, external_subject);
CREATE INDEX m2m_service_accounts_expires ON m2m_service_accounts (expires);
