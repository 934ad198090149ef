//! What the token endpoint asks of the SQL store: credentials, input-JWT
//! accounts, bindings, the replay cache and the revocation list.

use super::batch::{SqlWrite, Write};
use super::driver::{Columns, Statement};
use super::statements::{
    ACCOUNT_BY_ID, ACCOUNT_BY_USERNAME, APP_PASSWORD, BINDING, EXTEND_EXTERNAL_ACCOUNT,
    FORGET_FIRST_USE, INSERT_EXTERNAL_ACCOUNT, IS_REVOKED, REVOKE,
};
use super::values::{now_unix, unix_micros, unix_seconds};
use super::{SqlDialect, SqlStore};
use crate::store::{
    AccountCredential, AppPassword, Binding, CredentialStore, ExternalAccount, ReplayCache,
    RevocationList, ServiceAccount, StoreError, TokenDigest, scope_list,
};

impl<D: SqlDialect> CredentialStore for SqlStore<D> {
    async fn app_password(
        &self,
        username: &str,
        digest: &TokenDigest,
    ) -> Result<Option<AccountCredential>, StoreError> {
        let key = (username.to_owned(), *digest.as_bytes());
        let reads = &self.reads;
        reads
            .get(&reads.app_passwords, key, || async {
                let row = Statement::<D>::new(&APP_PASSWORD)
                    .bind(digest.as_bytes().as_slice())
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let (account, expires) = row.credential()?;
                let mut password = AppPassword::new(&account.id, *digest);
                password.expires = expires;
                Ok(Some(AccountCredential::new(account, password)))
            })
            .await
    }

    async fn external_account(
        &self,
        account: &ExternalAccount,
    ) -> Result<Option<ServiceAccount>, StoreError> {
        // Most uses: one read by primary key, and no write.
        if let Some(mut stored) = self.account_by_id(&account.id).await? {
            if account.extends(stored.expires) {
                let extend = SqlWrite::new(&EXTEND_EXTERNAL_ACCOUNT)
                    .bind(&account.id)
                    .bind(account.expires.map(unix_micros));
                let extended = self.writer.execute(&account.id, extend).await?;
                if extended == 1 {
                    stored.expires = account.expires;
                } else if let Some(fresh) = self.account_by(&ACCOUNT_BY_ID, &account.id).await? {
                    // Extended by another instance, whose announcement may
                    // not have reached this one yet: the row itself.
                    stored = fresh;
                }
            }
            return Ok(Some(stored));
        }
        // First use: the username asked for, or else the disambiguated one;
        // never an account that exists (any unique column conflicting means
        // no insert). A concurrent first use may win: then its row is read.
        let uuid = account.uuid.to_string();
        for username in account.candidate_usernames() {
            let insert = SqlWrite::new(&INSERT_EXTERNAL_ACCOUNT)
                .bind(&account.id)
                .bind(&uuid)
                .bind(&username)
                .bind(&account.name)
                .bind(&account.issuer)
                .bind(&account.subject)
                .bind(account.expires.map(unix_micros));
            let inserted = self.writer.execute(&account.id, insert).await?;
            if inserted == 1 {
                return Ok(Some(account.to_service_account(&username)));
            }
            // (Past the cache: the row that conflicted may be newer than
            // this instance has heard of.)
            if let Some(stored) = self.account_by(&ACCOUNT_BY_ID, &account.id).await? {
                return Ok(Some(stored));
            }
        }
        Err(StoreError(
            format!(
                "no free username for the input-JWT account {:?}",
                account.username
            )
            .into(),
        ))
    }

    async fn account(&self, username: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let reads = &self.reads;
        reads
            .get(&reads.accounts, username.to_owned(), || {
                self.account_by(&ACCOUNT_BY_USERNAME, username)
            })
            .await
    }

    async fn binding(
        &self,
        account_id: &str,
        client_id: &str,
    ) -> Result<Option<Binding>, StoreError> {
        let key = (account_id.to_owned(), client_id.to_owned());
        let reads = &self.reads;
        reads
            .get(&reads.bindings, key, || async {
                let row = Statement::<D>::new(&BINDING)
                    .bind(account_id)
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                Ok(Some(Binding::new(client_id, scope_list(&row.text(0)?))))
            })
            .await
    }
}

impl<D: SqlDialect> SqlStore<D> {
    /// The account with id `id` (an input-JWT identity), through the cache.
    async fn account_by_id(&self, id: &str) -> Result<Option<ServiceAccount>, StoreError> {
        let reads = &self.reads;
        reads
            .get(&reads.accounts_by_id, id.to_owned(), || {
                self.account_by(&ACCOUNT_BY_ID, id)
            })
            .await
    }
}

impl<D: SqlDialect> ReplayCache for SqlStore<D> {
    /// Inserts the key, or takes over an expired row; a live row is left
    /// alone and the use is refused. Atomic across processes and instances
    /// (concurrent inserts of one key wait for each other; one wins).
    /// Group-committed with the first uses arriving with it, in one
    /// statement: `true` only once that statement's transaction is
    /// committed.
    async fn first_use(&self, key: &str, expires_at: u64) -> Result<bool, StoreError> {
        let record = Write::FirstUse(unix_seconds(expires_at));
        Ok(self.writer.execute(key, record).await? == 1)
    }

    /// Group-committed like a first use; a first use of the same key in
    /// the same batch runs before it.
    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        let forget = SqlWrite::new(&FORGET_FIRST_USE).bind(key);
        self.writer.execute(key, forget).await?;
        Ok(())
    }
}

impl<D: SqlDialect> RevocationList for SqlStore<D> {
    /// Revoking again keeps the later expiry. Group-committed: answered
    /// once the transaction holding the revocation is committed.
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let revoke = SqlWrite::new(&REVOKE)
            .bind(jti)
            .bind(unix_seconds(expires_at));
        self.writer.execute(jti, revoke).await?;
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let row = Statement::<D>::new(&IS_REVOKED)
            .bind(jti)
            .bind(now_unix())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => row.flag(0),
            None => Err(StoreError("EXISTS returned no row".into())),
        }
    }
}
