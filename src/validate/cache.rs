//! The verified-token cache: repeated tokens skip the signature check.
//!
//! Keyed by the SHA-256 digest of the token, never the token itself, so a
//! memory dump of the cache yields no usable token. Each entry expires no
//! later than its token's `exp` (and at most [`max_ttl`] after it was
//! verified), and `exp` is checked again on every hit. The cache is bounded
//! both in entries and in bytes: every entry weighs at least
//! `max_bytes / max_entries`, and more if its claims are larger.
//!
//! [`max_ttl`]: super::JwtValidateLayer::token_cache_max_ttl

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::VerifiedClaims;

/// The SHA-256 digest of a token.
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn hash(token: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How large the cache may grow and how long entries live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSettings {
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 * 1024 * 1024,
            max_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone)]
struct Entry {
    claims: VerifiedClaims,
    /// Seconds since the epoch after which the entry is not used.
    deadline: u64,
}

#[derive(Clone)]
struct ByWeight {
    floor: u64,
}

impl Weighter<TokenHash, Entry> for ByWeight {
    fn weight(&self, _key: &TokenHash, entry: &Entry) -> u64 {
        (entry.claims.weight() as u64 + 32).max(self.floor)
    }
}

/// A bounded, concurrent cache of verified tokens. Clones share it.
#[derive(Clone)]
pub(crate) struct TokenCache {
    cache: Arc<Cache<TokenHash, Entry, ByWeight>>,
    max_ttl: u64,
}

impl TokenCache {
    /// A cache with these bounds, or none when `max_entries` or `max_bytes`
    /// is zero.
    pub(crate) fn new(settings: CacheSettings) -> Option<Self> {
        if settings.max_entries == 0 || settings.max_bytes == 0 {
            return None;
        }
        let floor = (settings.max_bytes / settings.max_entries).max(1) as u64;
        Some(Self {
            cache: Arc::new(Cache::with_weighter(
                settings.max_entries,
                settings.max_bytes as u64,
                ByWeight { floor },
            )),
            max_ttl: settings.max_ttl.as_secs(),
        })
    }

    /// The claims of a cached token that has not expired.
    #[inline]
    pub(crate) fn get(&self, hash: &TokenHash, now: u64) -> Option<VerifiedClaims> {
        let entry = self.cache.get(hash)?;
        if now < entry.deadline && now < entry.claims.expires_at() {
            Some(entry.claims)
        } else {
            self.cache.remove(hash);
            None
        }
    }

    /// Caches freshly verified claims (unless they expire now anyway).
    pub(crate) fn insert(&self, hash: TokenHash, claims: VerifiedClaims, now: u64) {
        let deadline = claims.expires_at().min(now.saturating_add(self.max_ttl));
        if deadline > now {
            self.cache.insert(hash, Entry { claims, deadline });
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> VerifiedClaims {
        let json = format!(r#"{{"iss":"i","aud":"a","exp":{exp}}}"#);
        VerifiedClaims::new(
            json.clone().into_bytes(),
            serde_json::from_str(&json).unwrap(),
        )
    }

    #[test]
    fn cached_token_expires_with_its_exp() {
        let cache = TokenCache::new(CacheSettings::default()).unwrap();
        let key = hash("token");
        cache.insert(key, claims(1_000), 900);
        assert!(cache.get(&key, 999).is_some());
        assert!(cache.get(&key, 1_000).is_none());
        assert_eq!(cache.len(), 0, "the expired entry is dropped");
    }

    #[test]
    fn entries_live_at_most_max_ttl() {
        let cache = TokenCache::new(CacheSettings::default()).unwrap();
        let key = hash("token");
        cache.insert(key, claims(100_000), 1_000);
        assert!(cache.get(&key, 1_299).is_some());
        assert!(cache.get(&key, 1_300).is_none());
    }

    #[test]
    fn cache_is_bounded_in_entries() {
        let settings = CacheSettings {
            max_entries: 100,
            ..CacheSettings::default()
        };
        let cache = TokenCache::new(settings).unwrap();
        for i in 0..1_000 {
            cache.insert(hash(&format!("token-{i}")), claims(10_000), 1);
        }
        assert!(cache.len() <= 100, "{}", cache.len());
    }

    #[test]
    fn zero_entries_disables_the_cache() {
        let settings = CacheSettings {
            max_entries: 0,
            ..CacheSettings::default()
        };
        assert!(TokenCache::new(settings).is_none());
    }
}
