//! The administration commands, on the store the configuration names.
//! Messages go to stderr; stdout carries only a new token, or the list of
//! accounts.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tower_m2m_auth::store::{
    AccountAdmin, AdminError, AnyStore, Binding, ServiceAccount, TokenDigest,
};

use crate::BoxError;
use crate::cli::{Command, RevokedToken};
use crate::file::{DEFAULT_LISTEN, ServerFile, Source};
use crate::report::{print_accounts, print_new_token};

/// Runs an administration command against the configured store.
pub(crate) async fn run(config_path: Option<PathBuf>, command: Command) -> Result<(), BoxError> {
    let Some(config_path) = config_path else {
        return Err(
            "this command needs --config FILE, whose [store] it works on \
                    (the embedded demo keeps its accounts in memory, for one run)"
                .into(),
        );
    };
    let source = Source::load(Some(config_path))?;
    let mut file = ServerFile::parse(&source)?;
    source.fill_defaults(&mut file.config, DEFAULT_LISTEN);
    let config = &file.config;
    let (store_name, memory) = config.describe_store(source.base_dir())?;
    if memory && !matches!(command, Command::List) {
        return Err(format!(
            "{source} keeps its service accounts in memory, so a change made here would be \
             lost at once: name a persistent [store] (SQLite, the default with the `sqlite` \
             feature: run with `--features sqlite`)"
        )
        .into());
    }
    let store = config.open_store(source.base_dir()).await?;

    match command {
        Command::Serve(_) => unreachable!("serve is not an administration command"),
        Command::CreateServiceAccount {
            username,
            name,
            expires,
        } => {
            let expires = expires.map(expiry_after).transpose()?;
            let mut account = ServiceAccount::new(&username);
            if let Some(name) = name {
                account = account.with_name(name);
            }
            let (account, token) = store.create_service_account(account, expires).await?;
            eprintln!(
                "Created service account {:?} ({:?}) in the {store_name}.",
                account.username, account.name
            );
            print_new_token(&account.username, &token, expires);
        }
        Command::AddToken { username, expires } => {
            let expires = expires.map(expiry_after).transpose()?;
            let token = store.add_app_password(&username, expires).await?;
            eprintln!("Added an app-password token to {username:?} in the {store_name}.");
            print_new_token(&username, &token, expires);
        }
        Command::List => {
            let mut listed = Vec::new();
            for account in store.list_service_accounts().await? {
                let bindings = store.list_bindings(&account.username).await?;
                listed.push((account, bindings));
            }
            print_accounts(&listed);
        }
        Command::RevokeToken(which) => {
            let digest = which.digest()?;
            // Every start imports the configured tokens again.
            if let Some(owner) = config.declares_token(&digest) {
                return Err(format!(
                    "{source} declares this token for {owner:?}: remove it from the file first, \
                     then revoke it (the server imports the file's tokens at every start)"
                )
                .into());
            }
            if !store.revoke_app_password(&digest).await? {
                return Err(
                    format!("no app-password token with this digest in the {store_name}").into(),
                );
            }
            eprintln!("Revoked the app-password token {}.", digest.to_hex());
        }
        Command::Disable { username } => set_active(&store, &username, false, &store_name).await?,
        Command::Enable { username } => set_active(&store, &username, true, &store_name).await?,
        Command::Bind {
            username,
            client_id,
            scopes,
        } => {
            let binding = Binding::new(client_id, scopes);
            config.check_binding(&binding)?;
            store.bind_account(&username, binding.clone()).await?;
            eprintln!(
                "Bound {username:?} to {:?} with scopes [{}] in the {store_name}.",
                binding.client_id,
                binding.scopes.join(" ")
            );
        }
        Command::Unbind {
            username,
            client_id,
        } => {
            // Every start applies the configured bindings again.
            if config.declares_binding(&username, &client_id) {
                return Err(format!(
                    "{source} binds {username:?} to {client_id:?}: remove the binding from the \
                     file first, then unbind (the server applies the file's bindings at every \
                     start)"
                )
                .into());
            }
            if !store.unbind_account(&username, &client_id).await? {
                return Err(format!(
                    "{username:?} is not bound to {client_id:?} in the {store_name}"
                )
                .into());
            }
            eprintln!("Unbound {username:?} from {client_id:?} in the {store_name}.");
        }
    }
    Ok(())
}

async fn set_active(
    store: &AnyStore,
    username: &str,
    active: bool,
    store_name: &str,
) -> Result<(), BoxError> {
    if !store.set_account_active(username, active).await? {
        return Err(AdminError::NoSuchAccount(username.to_owned()).into());
    }
    let state = if active { "enabled" } else { "disabled" };
    eprintln!("Service account {username:?} {state} in the {store_name}.");
    Ok(())
}

impl RevokedToken {
    /// The digest of the token to revoke.
    fn digest(&self) -> Result<TokenDigest, BoxError> {
        let token = match (&self.token, &self.sha256) {
            (_, Some(hex)) => {
                return TokenDigest::from_hex(hex)
                    .ok_or_else(|| "--sha256 must be 64 hex digits (a SHA-256)".into());
            }
            (Some(token), None) if token == "-" => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|error| format!("cannot read the token from stdin: {error}"))?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
            (Some(token), None) => token.clone(),
            (None, None) => return Err("give --token or --sha256".into()),
        };
        if token.is_empty() {
            return Err("no token on stdin".into());
        }
        Ok(TokenDigest::of(&token))
    }
}

/// `--expires` after now.
fn expiry_after(duration: Duration) -> Result<SystemTime, String> {
    SystemTime::now()
        .checked_add(duration)
        .ok_or_else(|| "--expires is too far in the future".into())
}
