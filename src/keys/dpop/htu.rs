//! The `htu` comparison (RFC 9449 §4.3 step 9): URIs compared after
//! syntax- and scheme-based normalization (RFC 3986 §6.2.2, §6.2.3), without
//! query and fragment.

/// `uri` normalized for comparison with a proof's `htu`: an absolute
/// `http`/`https` URI without user info, its scheme and host lowercased,
/// the default port dropped, dot segments resolved, an empty path made `/`,
/// query and fragment removed. `None` for anything else.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let mut url = url::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url.into())
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
            "https://server.example.com/a/../token?x=1#frag",
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
    }

    #[test]
    fn non_http_or_relative_uris_are_refused() {
        for uri in [
            "/token",
            "ftp://a.example/",
            "https://user@a.example/",
            "",
            "urn:x:y",
        ] {
            assert_eq!(normalize_htu(uri), None, "{uri}");
        }
    }
}
