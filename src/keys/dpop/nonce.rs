//! Server nonces (RFC 9449 §8), stateless: a nonce is the time it was
//! issued and an HMAC of it, so every instance sharing the secret accepts
//! every other's nonces, and a nonce expires after a bounded validity.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

use crate::keys::KeyError;

/// Bytes of the HMAC kept in a nonce.
const TAG: usize = 16;

/// Issues and checks DPoP server nonces. Clones share the key.
///
/// A nonce is `base64url(issued_at ‖ HMAC-SHA256(secret, issued_at)[..16])`:
/// nothing is stored, instances with the same secret agree, and a nonce is
/// accepted from its issue until `validity` later (clock skew of 5 seconds
/// tolerated). Every response carries a fresh one (`DPoP-Nonce`), so nonces
/// rotate with time.
#[derive(Clone)]
pub struct DpopNonces {
    key: Arc<hmac::Key>,
    validity: Duration,
}

impl DpopNonces {
    /// Nonces keyed by `secret` (at least 32 bytes), each valid for
    /// `validity` after its issue.
    pub fn new(secret: &[u8], validity: Duration) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::WeakSecret);
        }
        Ok(Self {
            key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, secret)),
            validity,
        })
    }

    /// How long a nonce stays valid.
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// A nonce issued at `now` (Unix seconds).
    pub fn issue(&self, now: u64) -> String {
        let time = now.to_be_bytes();
        let tag = hmac::sign(&self.key, &time);
        let mut bytes = [0u8; 8 + TAG];
        bytes[..8].copy_from_slice(&time);
        bytes[8..].copy_from_slice(&tag.as_ref()[..TAG]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `nonce` was issued with this secret and is still valid at
    /// `now`.
    pub fn is_valid(&self, nonce: &str, now: u64) -> bool {
        let mut bytes = [0u8; 8 + TAG];
        if URL_SAFE_NO_PAD.decode_slice(nonce, &mut bytes) != Ok(8 + TAG) {
            return false;
        }
        let time: [u8; 8] = bytes[..8].try_into().unwrap_or_default();
        let tag = hmac::sign(&self.key, &time);
        if !bool::from(tag.as_ref()[..TAG].ct_eq(&bytes[8..])) {
            return false;
        }
        let issued = u64::from_be_bytes(time);
        issued <= now.saturating_add(5) && now.saturating_sub(issued) < self.validity.as_secs()
    }
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::DpopNonces;

    fn nonces(secret: u8) -> DpopNonces {
        DpopNonces::new(&[secret; 32], Duration::from_secs(300)).unwrap()
    }

    #[test]
    fn a_nonce_is_valid_for_its_validity_on_any_instance_with_the_secret() {
        let nonce = nonces(1).issue(1_000);
        assert!(nonces(1).is_valid(&nonce, 1_000));
        assert!(nonces(1).is_valid(&nonce, 1_299));
        assert!(!nonces(1).is_valid(&nonce, 1_300), "expired");
        assert!(!nonces(1).is_valid(&nonce, 900), "from the future");
        assert!(!nonces(2).is_valid(&nonce, 1_000), "another secret");
    }

    #[test]
    fn forged_or_garbled_nonces_are_refused() {
        let nonce = nonces(1).issue(1_000);
        let mut forged = nonce.clone().into_bytes();
        forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        for bad in [
            forged.as_str(),
            "",
            "abc",
            &nonce[1..],
            &format!("{nonce}A"),
        ] {
            assert!(!nonces(1).is_valid(bad, 1_000), "{bad}");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(DpopNonces::new(&[0; 31], Duration::from_secs(1)).is_err());
    }
}
