//! Managing the SQL store's accounts, app passwords and bindings.

use std::time::SystemTime;

use secrecy::SecretString;

use super::driver::{Columns, Statement};
use super::statements::{
    ACCOUNT_ID_BY_USERNAME, ADD_APP_PASSWORD, BIND, DELETE_APP_PASSWORD, IMPORT_APP_PASSWORD,
    INSERT_ACCOUNT, INSERT_APP_PASSWORD, LIST_ACCOUNTS, LIST_BINDINGS, OWNER_OF_APP_PASSWORD,
    SET_ACTIVE, UNBIND,
};
use super::values::{is_jwt_id, join_scopes, refused_account, store_error, unix_micros};
use super::{SqlDialect, SqlStore};
use crate::store::{
    AccountAdmin, AdminError, AppPassword, Binding, CredentialStore, ServiceAccount, StoreError,
    TokenDigest, scope_list,
};

impl<D: SqlDialect> SqlStore<D> {
    /// The statement that inserts `account` unless a unique column is taken.
    fn insert_account(account: &ServiceAccount) -> Statement<D> {
        Statement::new(&INSERT_ACCOUNT)
            .bind(&account.id)
            .bind(account.uuid.to_string().as_str())
            .bind(&account.username)
            .bind(&account.name)
            .bind(account.active)
    }
}

/// The text in the first column of `row`, if there is a row.
fn first_text(row: Option<impl Columns>) -> Result<Option<String>, StoreError> {
    row.map(|row| row.text(0)).transpose()
}

impl<D: SqlDialect> AccountAdmin for SqlStore<D> {
    async fn create_service_account(
        &self,
        account: ServiceAccount,
        expires: Option<SystemTime>,
    ) -> Result<(ServiceAccount, SecretString), AdminError> {
        account.check()?;
        let (token, password) = AppPassword::generate(&account.id);
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        if Self::insert_account(&account).execute(&mut tx).await? == 0 {
            let holder = Statement::<D>::new(&ACCOUNT_ID_BY_USERNAME)
                .bind(&account.username)
                .fetch_optional(&mut tx)
                .await?;
            let holder = first_text(holder)?;
            return Err(refused_account(account.username, holder.as_deref()));
        }
        Statement::<D>::new(&INSERT_APP_PASSWORD)
            .bind(password.digest.as_bytes().as_slice())
            .bind(&account.id)
            .bind(expires.map(unix_micros))
            .bind(unix_micros(SystemTime::now()))
            .execute(&mut tx)
            .await?;
        tx.commit().await.map_err(store_error)?;
        self.settled(1).await;
        let account = ServiceAccount {
            expires: None,
            external_issuer: None,
            external_subject: None,
            ..account
        };
        Ok((account, token))
    }

    async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>, StoreError> {
        let rows = Statement::<D>::new(&LIST_ACCOUNTS)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Columns::account).collect()
    }

    async fn add_app_password(
        &self,
        username: &str,
        expires: Option<SystemTime>,
    ) -> Result<SecretString, AdminError> {
        let (token, password) = AppPassword::generate(String::new());
        let inserted = Statement::<D>::new(&ADD_APP_PASSWORD)
            .bind(password.digest.as_bytes().as_slice())
            .bind(expires.map(unix_micros))
            .bind(unix_micros(SystemTime::now()))
            .bind(username)
            .execute(&self.pool)
            .await?;
        if inserted == 0 {
            // No such account, or an input-JWT identity: say which.
            self.service_account_id(username).await?;
            return Err(AdminError::NoSuchAccount(username.to_owned()));
        }
        self.settled(inserted).await;
        Ok(token)
    }

    async fn revoke_app_password(&self, digest: &TokenDigest) -> Result<bool, StoreError> {
        let deleted = Statement::<D>::new(&DELETE_APP_PASSWORD)
            .bind(digest.as_bytes().as_slice())
            .execute(&self.pool)
            .await?;
        self.settled(deleted).await;
        Ok(deleted > 0)
    }

    async fn set_account_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        let updated = Statement::<D>::new(&SET_ACTIVE)
            .bind(active)
            .bind(username)
            .execute(&self.pool)
            .await?;
        self.settled(updated).await;
        Ok(updated > 0)
    }

    async fn import_service_account(
        &self,
        account: ServiceAccount,
    ) -> Result<ServiceAccount, AdminError> {
        account.check()?;
        // Inserted unless a unique column is taken; then whichever account
        // holds the username, if it is a service account.
        let inserted = Self::insert_account(&account).execute(&self.pool).await?;
        self.settled(inserted).await;
        match self.account(&account.username).await? {
            Some(stored) if !stored.is_jwt_identity() => Ok(stored),
            stored => Err(refused_account(
                account.username,
                stored.as_ref().map(|stored| stored.id.as_str()),
            )),
        }
    }

    async fn import_app_password(
        &self,
        username: &str,
        password: AppPassword,
    ) -> Result<bool, AdminError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let account_id = Statement::<D>::new(&ACCOUNT_ID_BY_USERNAME)
            .bind(username)
            .fetch_optional(&mut tx)
            .await?;
        let account_id = match first_text(account_id)? {
            None => return Err(AdminError::NoSuchAccount(username.to_owned())),
            Some(id) if is_jwt_id(&id) => {
                return Err(AdminError::NameOfJwtIdentity(username.to_owned()));
            }
            Some(id) => id,
        };
        let digest = password.digest.as_bytes().as_slice();
        let inserted = Statement::<D>::new(&IMPORT_APP_PASSWORD)
            .bind(digest)
            .bind(&account_id)
            .bind(password.expires.map(unix_micros))
            .bind(unix_micros(SystemTime::now()))
            .execute(&mut tx)
            .await?;
        if inserted == 1 {
            tx.commit().await.map_err(store_error)?;
            self.settled(inserted).await;
            return Ok(true);
        }
        let owner = Statement::<D>::new(&OWNER_OF_APP_PASSWORD)
            .bind(digest)
            .fetch_optional(&mut tx)
            .await?;
        let owner = first_text(owner)?;
        tx.commit().await.map_err(store_error)?;
        match owner {
            // (None: revoked since the insert found it; as if right after.)
            Some(owner) if owner != account_id => Err(AdminError::PasswordOfAnotherAccount),
            _ => Ok(false),
        }
    }

    async fn bind_account(&self, username: &str, binding: Binding) -> Result<(), AdminError> {
        binding.check()?;
        let account_id = self.service_account_id(username).await?;
        let bound = Statement::<D>::new(&BIND)
            .bind(&account_id)
            .bind(&binding.client_id)
            .bind(join_scopes(&binding.scopes).as_str())
            .execute(&self.pool)
            .await?;
        self.settled(bound).await;
        Ok(())
    }

    async fn unbind_account(&self, username: &str, client_id: &str) -> Result<bool, AdminError> {
        let Some(account_id) = self.account_id(username).await? else {
            return Err(AdminError::NoSuchAccount(username.to_owned()));
        };
        let deleted = Statement::<D>::new(&UNBIND)
            .bind(&account_id)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        self.settled(deleted).await;
        Ok(deleted > 0)
    }

    async fn list_bindings(&self, username: &str) -> Result<Vec<Binding>, AdminError> {
        let Some(account_id) = self.account_id(username).await? else {
            return Err(AdminError::NoSuchAccount(username.to_owned()));
        };
        let rows = Statement::<D>::new(&LIST_BINDINGS)
            .bind(&account_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(Binding::new(row.text(0)?, scope_list(&row.text(1)?))))
            .collect()
    }
}
