//! What the administration commands print: a new token alone on stdout,
//! the accounts as a table.

use std::time::SystemTime;

use secrecy::{ExposeSecret as _, SecretString};
use tower_m2m_auth::store::{Binding, ServiceAccount};

/// Prints a new token: on stdout, alone, so that scripts can capture it.
pub(crate) fn print_new_token(username: &str, token: &SecretString, expires: Option<SystemTime>) {
    match expires.and_then(|at| jiff::Timestamp::try_from(at).ok()) {
        Some(at) => eprintln!(
            "The token expires at {}.",
            jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
        ),
        None => eprintln!("The token does not expire."),
    }
    eprintln!(
        "warning: the token is shown only this once (only its SHA-256 is stored): \
         keep it now. Clients log in with username={username} and password=<token>."
    );
    println!("{}", token.expose_secret());
}

/// The accounts with their bindings, as a table on stdout. KIND tells
/// service accounts from identities recorded from input JWTs (`jwt <iss>`),
/// which never get app passwords or bindings.
pub(crate) fn print_accounts(accounts: &[(ServiceAccount, Vec<Binding>)]) {
    let rows: Vec<[String; 5]> = accounts
        .iter()
        .map(|(account, bindings)| {
            let kind = match &account.external_issuer {
                Some(issuer) => format!("jwt {issuer}"),
                None if account.is_jwt_identity() => "jwt".to_owned(),
                None => "service".to_owned(),
            };
            let bindings: Vec<String> = bindings
                .iter()
                .map(|b| format!("{}({})", b.client_id, b.scopes.join(",")))
                .collect();
            let active = if account.active { "yes" } else { "no" };
            [
                account.username.clone(),
                account.name.clone(),
                active.to_owned(),
                kind,
                bindings.join(" "),
            ]
        })
        .collect();
    let headers = ["USERNAME", "NAME", "ACTIVE", "KIND", "BINDINGS"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            line.push_str(&format!("{cell:width$}  "));
        }
        println!("{}", line.trim_end());
    };
    line(headers);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}
