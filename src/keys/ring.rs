//! The issuer's key ring: one active signing key, every key published.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use jsonwebtoken::jwk::JwkSet;

use super::{KeySet, SigningKey};

/// The issuer's signing keys.
///
/// One key is active and signs new tokens; every asymmetric key in the ring is
/// published in the JWKS, so tokens signed by a previous key still verify
/// while they are in flight. HS256 keys are never published; the ring still
/// verifies their tokens itself ([`verification_keys`](Self::verification_keys)),
/// so introspection, revocation and federation work with them too. A `KeyRing` is a cheap handle: clones share the
/// same keys, and [`rotate`](Self::rotate) or [`retire`](Self::retire) on one
/// handle is seen by every endpoint that holds another. Reads never lock:
/// the key set is swapped atomically.
///
/// ```
/// use tower_m2m_auth::keys::{KeyRing, SigningKey};
/// use jsonwebtoken::Algorithm;
///
/// let ring = KeyRing::new(SigningKey::generate(Algorithm::ES256).unwrap());
/// let old = ring.active().kid().to_owned();
/// ring.rotate(SigningKey::generate(Algorithm::ES256).unwrap());
/// assert_ne!(ring.active().kid(), old);
/// assert_eq!(ring.jwks().keys.len(), 2); // the old key is still published
/// assert!(ring.retire(&old));
/// assert_eq!(ring.jwks().keys.len(), 1);
/// ```
#[derive(Clone)]
pub struct KeyRing {
    state: Arc<ArcSwap<RingState>>,
}

struct RingState {
    active: Arc<SigningKey>,
    /// Every key, the active one first.
    keys: Vec<Arc<SigningKey>>,
    jwks: JwkSet,
    jwks_json: Bytes,
    verification: Arc<KeySet>,
}

impl RingState {
    fn new(active: Arc<SigningKey>, mut keys: Vec<Arc<SigningKey>>) -> Self {
        keys.insert(0, active.clone());
        // One key per kid: the first (the active one, then the oldest) wins.
        let mut seen = std::collections::HashSet::new();
        keys.retain(|key| seen.insert(key.kid().to_owned()));
        let jwks = JwkSet {
            keys: keys
                .iter()
                .filter_map(|key| key.public_jwk().cloned())
                .collect(),
        };
        let jwks_json = Bytes::from(serde_json::to_vec(&jwks).unwrap_or_default());
        // The published keys, and the ring's secrets, which only the
        // issuer itself may verify with (an HS256 key only allows HS256:
        // no public key can stand in for it, nor it for one).
        let mut verification = KeySet::from_jwks(&jwks);
        verification.extend(&KeySet::new(
            keys.iter()
                .filter_map(|key| key.secret_verification_key().cloned()),
        ));
        let verification = Arc::new(verification);
        Self {
            active,
            keys,
            jwks,
            jwks_json,
            verification,
        }
    }
}

impl KeyRing {
    /// A ring with one key, which is active.
    pub fn new(active: SigningKey) -> Self {
        let state = RingState::new(Arc::new(active), Vec::new());
        Self {
            state: Arc::new(ArcSwap::from_pointee(state)),
        }
    }

    /// Adds a key that is published but does not sign: an older key whose
    /// tokens are still in flight, or the next key, announced ahead of its
    /// rotation so that validators have it cached already.
    pub fn with_published(self, key: SigningKey) -> Self {
        let key = Arc::new(key);
        self.update(|state| {
            let mut keys = state.keys.clone();
            keys.push(key.clone());
            RingState::new(state.active.clone(), keys)
        });
        self
    }

    /// Makes `key` the active signer. The previous keys stay published until
    /// [`retire`](Self::retire)d; a key with the same `kid` is replaced.
    pub fn rotate(&self, key: SigningKey) {
        let key = Arc::new(key);
        self.update(|state| RingState::new(key.clone(), state.keys.clone()));
    }

    /// Removes the key with this `kid` from the ring (and the JWKS). The
    /// active key cannot be retired; returns whether a key was removed.
    pub fn retire(&self, kid: &str) -> bool {
        let mut removed = false;
        self.update(|state| {
            let mut keys = state.keys.clone();
            let before = keys.len();
            keys.retain(|key| key.kid() != kid || key.kid() == state.active.kid());
            removed = keys.len() != before;
            RingState::new(state.active.clone(), keys)
        });
        removed
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Arc<SigningKey> {
        self.state.load().active.clone()
    }

    /// The `kid`s of every key in the ring, the active key first.
    pub fn kids(&self) -> Vec<String> {
        let state = self.state.load();
        state.keys.iter().map(|key| key.kid().to_owned()).collect()
    }

    /// The published keys as a JWK set (symmetric keys are never included).
    pub fn jwks(&self) -> JwkSet {
        self.state.load().jwks.clone()
    }

    /// The JWKS document, serialized once per change of the ring.
    pub fn jwks_json(&self) -> Bytes {
        self.state.load().jwks_json.clone()
    }

    /// What verifies the tokens this issuer minted, parsed once per change
    /// of the ring: the published keys, and the secrets of HS256 keys.
    /// These hold the signing secret: keep them inside the issuer's
    /// process (its introspection, revocation, a validator in the same
    /// process), never hand them to another party.
    pub fn verification_keys(&self) -> Arc<KeySet> {
        self.state.load().verification.clone()
    }

    /// Signs with the active key without cloning its `Arc`.
    pub(crate) fn with_active<R>(&self, f: impl FnOnce(&SigningKey) -> R) -> R {
        f(&self.state.load().active)
    }

    fn update(&self, mut f: impl FnMut(&RingState) -> RingState) {
        self.state.rcu(|state| f(state));
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.kids())
            .finish()
    }
}
