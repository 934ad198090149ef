//! The token server's configuration: a TOML document deserialized as
//! `config::Config`, then `Config::build` in a new empty folder.
//!
//! Input: the TOML text; `$SECRET` expands to a secret the harness knows.
//! Oracle: no panic and no hang; what does not build is refused with a
//! `BuildError`, whose message never holds the secret when the secret sits
//! only where secrets go (client secrets, app-password tokens, the DPoP
//! nonce secret, the subject salt, store URLs). A document naming a path
//! outside its folder (absolute, or with `..`) is only deserialized: its
//! build could read a device file forever or write a key file anywhere.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tower_m2m_auth::config::Config;
use tower_m2m_auth_fuzz::*;

/// What `$SECRET` expands to.
const SECRET: &str = "fz-config-secret-5e0c1d";

/// The keys whose values are secrets, or may hold one (a URL's password).
const SECRET_KEYS: [&str; 6] = [
    "client_secret",
    "token",
    "subject_salt",
    "dpop_nonce_secret",
    "postgres",
    "redis",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.replace("$SECRET", SECRET);
    let Ok(config) = toml::from_str::<Config>(&text) else {
        return;
    };
    let Ok(document) = toml::from_str::<toml::Table>(&text) else {
        panic!("a Config that is no TOML table");
    };
    let mut strings = Strings::default();
    strings.table(&document);
    if strings.leave_folder {
        return;
    }
    let folder = std::env::temp_dir().join(format!("m2m-fuzz-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir(&folder).expect("a new folder");
    let built = run(config.build(&folder));
    let _ = std::fs::remove_dir_all(&folder);
    if let Err(error) = built {
        let message = error.to_string();
        if strings.secret_only_where_secrets_go {
            assert!(!message.contains(SECRET), "secret echoed: {message}");
        }
    }
});

/// What the document's strings (keys and values) say.
struct Strings {
    /// Whether a value names a path outside the build's folder.
    leave_folder: bool,
    /// Whether `SECRET` occurs only in values of `SECRET_KEYS`.
    secret_only_where_secrets_go: bool,
}

impl Default for Strings {
    fn default() -> Self {
        Self {
            leave_folder: false,
            secret_only_where_secrets_go: true,
        }
    }
}

impl Strings {
    fn table(&mut self, table: &toml::Table) {
        for (key, value) in table {
            if key.contains(SECRET) {
                self.secret_only_where_secrets_go = false;
            }
            self.value(value, SECRET_KEYS.contains(&key.as_str()));
        }
    }

    fn value(&mut self, value: &toml::Value, secret: bool) {
        match value {
            toml::Value::String(text) => {
                if text.contains(SECRET) && !secret {
                    self.secret_only_where_secrets_go = false;
                }
                let path = Path::new(text);
                if path.is_absolute() || text.contains("..") {
                    self.leave_folder = true;
                }
            }
            toml::Value::Array(values) => {
                for value in values {
                    self.value(value, secret);
                }
            }
            toml::Value::Table(table) => self.table(table),
            _ => {}
        }
    }
}
