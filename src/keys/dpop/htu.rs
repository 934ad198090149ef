//! The `htu` comparison (RFC 9449 §4.3 step 9): URIs compared after the
//! syntax- and scheme-based normalization of RFC 3986 §6.2.2 and §6.2.3
//! (case of scheme, host and percent-encodings, percent-encoded unreserved
//! characters decoded, dot segments removed, default port, empty path),
//! without query and fragment.

use http::Uri;

/// `uri` normalized for comparison with a proof's `htu`: an absolute
/// `http`/`https` URI without user info, its scheme and host lowercased,
/// the default port dropped, its path normalized (RFC 3986 §6.2.2; an
/// empty path made `/`), query and fragment removed. `None` for anything
/// else.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let without_fragment = uri.split('#').next().unwrap_or(uri);
    let uri: Uri = without_fragment.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    let path = match uri.path() {
        "" => "/".to_owned(),
        path => normalize_path(path),
    };
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}{path}"),
        _ => format!("{scheme}://{host}{path}"),
    })
}

/// An absolute path (`/…`, as [`Uri::path`] gives it) normalized per RFC
/// 3986 §6.2.2: percent-encodings in upper case, those of unreserved
/// characters decoded (`%7E` is `~`; `%2F` stays), then the dot segments
/// removed (§5.2.4: `/a/./b/../c` is `/a/c`).
fn normalize_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        let escape = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                decoded.push(char::from(byte));
            }
            Some(byte) => decoded.push_str(&format!("%{byte:02X}")),
            None => {
                decoded.push(char::from(bytes[at]));
                at += 1;
                continue;
            }
        }
        at += 3;
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = decoded
        .strip_prefix('/')
        .unwrap_or(&decoded)
        .split('/')
        .peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => {
                if segment == ".." {
                    kept.pop();
                }
                // A path ending in a dot segment names a directory.
                if last {
                    kept.push("");
                }
            }
            segment => kept.push(segment),
        }
    }
    format!("/{}", kept.join("/"))
}

#[cfg(test)]
mod tests {
    use super::{normalize_htu, normalize_path};

    /// RFC 3986 §5.4 and §6.2.2's examples, and the escapes that must stay.
    #[test]
    fn paths_normalize_per_rfc_3986() {
        for (path, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/", "/"),
            ("/a//b", "/a//b"),
            ("/%7Euser/%7efoo", "/~user/~foo"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb%3a", "/a%2Fb%3A"),
            ("/%41%2E%2E/x", "/A../x"),
            ("/a/%2E%2E/b", "/b"),
            ("/50%", "/50%"),
            ("/%zz", "/%zz"),
        ] {
            assert_eq!(normalize_path(path), want, "{path}");
        }
    }

    #[test]
    fn equivalent_uris_normalize_alike() {
        let want = Some("https://server.example.com/token".to_owned());
        for uri in [
            "https://server.example.com/token",
            "HTTPS://Server.Example.COM:443/token",
            "https://server.example.com/token?x=1#frag",
            "https://server.example.com/token#frag",
            "https://server.example.com/api/../token",
            "https://server.example.com/./%74oken",
        ] {
            assert_eq!(normalize_htu(uri), want, "{uri}");
        }
        assert_eq!(
            normalize_htu("http://a.example"),
            Some("http://a.example/".to_owned())
        );
        assert_eq!(
            normalize_htu("http://a.example:8080/x"),
            Some("http://a.example:8080/x".to_owned())
        );
        assert_eq!(
            normalize_htu("http://[::1]:80/x"),
            Some("http://[::1]/x".to_owned())
        );
    }

    #[test]
    fn non_http_or_relative_uris_are_refused() {
        for uri in [
            "/token",
            "ftp://a.example/",
            "https://user@a.example/",
            "",
            "urn:x:y",
            "https:///x",
        ] {
            assert_eq!(normalize_htu(uri), None, "{uri}");
        }
    }
}
