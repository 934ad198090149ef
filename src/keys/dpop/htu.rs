//! The `htu` comparison (RFC 9449 §4.3 step 9): URIs compared after the
//! syntax- and scheme-based normalization of RFC 3986 §6.2.2 and §6.2.3
//! that matters for an HTTP endpoint (case of scheme and host, default
//! port, empty path), without query and fragment.

use http::Uri;

/// `uri` normalized for comparison with a proof's `htu`: an absolute
/// `http`/`https` URI without user info, its scheme and host lowercased,
/// the default port dropped, an empty path made `/`, query and fragment
/// removed. `None` for anything else. (Dot segments and percent-encoding
/// case are compared as sent.)
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
        "" => "/",
        path => path,
    };
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}{path}"),
        _ => format!("{scheme}://{host}{path}"),
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_htu;

    #[test]
    fn equivalent_uris_normalize_alike() {
        let want = Some("https://server.example.com/token".to_owned());
        for uri in [
            "https://server.example.com/token",
            "HTTPS://Server.Example.COM:443/token",
            "https://server.example.com/token?x=1#frag",
            "https://server.example.com/token#frag",
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
