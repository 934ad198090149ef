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
    print!("{}", accounts_table(accounts));
}

/// A cell as it is shown: every control character escaped (`\n`,
/// `\u{1b}`), so that no value can end a row, move the cursor or recolour
/// the terminal.
fn shown(value: &str) -> String {
    value
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// The table that [`print_accounts`] prints.
fn accounts_table(accounts: &[(ServiceAccount, Vec<Binding>)]) -> String {
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
                account.username.as_str(),
                account.name.as_str(),
                active,
                kind.as_str(),
                bindings.join(" ").as_str(),
            ]
            .map(shown)
        })
        .collect();
    let headers = ["USERNAME", "NAME", "ACTIVE", "KIND", "BINDINGS"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            line.push_str(&format!("{cell:width$}  "));
        }
        table.push_str(line.trim_end());
        table.push('\n');
    };
    line(headers);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_never_prints_a_control_character_raw() {
        // As an older store, or another program, may have written it.
        let forged = "x\nroot  Administrator  yes  service\u{1b}[2K";
        let account = ServiceAccount::new("bot").with_name(forged);
        let binding = Binding::new("app\r", ["read"]);
        let table = accounts_table(&[(account, vec![binding])]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(
            !table
                .trim_end()
                .chars()
                .any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(lines[1].contains("x\\nroot"), "{table}");
        assert!(lines[1].contains("\\u{1b}[2K"), "{table}");
    }
}
