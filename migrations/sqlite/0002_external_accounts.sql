-- tower-m2m-auth: automatic service accounts of input-JWT identities.
-- Such an account is keyed by its id, derived from the JWT's (iss, sub); these
-- columns say which identity it is and until when (Unix microseconds, the
-- newest exp seen). NULL for every other account.

ALTER TABLE m2m_service_accounts ADD COLUMN external_issuer TEXT;
ALTER TABLE m2m_service_accounts ADD COLUMN external_subject TEXT;
ALTER TABLE m2m_service_accounts ADD COLUMN expires INTEGER;

CREATE UNIQUE INDEX m2m_service_accounts_external
    ON m2m_service_accounts (external_issuer, external_subject);
CREATE INDEX m2m_service_accounts_expires ON m2m_service_accounts (expires);
