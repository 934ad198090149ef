//! Verification keys from a PEM bundle: a certificate chain, or an issuer's
//! current and next keys in one file.

use super::{KeyError, VerificationKey};

impl VerificationKey {
    /// Every key of a PEM bundle of `CERTIFICATE` and `PUBLIC KEY` blocks
    /// (a certificate chain, or an issuer's current and next keys), in
    /// order. Refused: no block at all, a private key, any other block, and
    /// a key of no supported type, each naming the block.
    ///
    /// ```
    /// use tower_m2m_auth::keys::{KeyError, VerificationKey};
    ///
    /// let private = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    /// assert!(matches!(
    ///     VerificationKey::from_pem_bundle(private),
    ///     Err(KeyError::PrivateKeyInBundle(1))
    /// ));
    /// ```
    pub fn from_pem_bundle(pem: &[u8]) -> Result<Vec<Self>, KeyError> {
        let blocks = pem::parse_many(pem).map_err(|_| KeyError::InvalidPem)?;
        if blocks.is_empty() {
            return Err(KeyError::EmptyPemBundle);
        }
        let mut keys = Vec::with_capacity(blocks.len());
        for (index, block) in blocks.iter().enumerate() {
            let number = index + 1;
            match block.tag() {
                "CERTIFICATE" | "PUBLIC KEY" => {}
                tag if tag.ends_with("PRIVATE KEY") => {
                    return Err(KeyError::PrivateKeyInBundle(number));
                }
                tag => {
                    return Err(KeyError::UnexpectedPemBlock {
                        block: number,
                        tag: tag.to_owned(),
                    });
                }
            }
            let key = Self::from_pem_block(block)
                .map_err(|_| KeyError::UnsupportedKeyInBundle(number))?;
            keys.push(key);
        }
        Ok(keys)
    }
}
