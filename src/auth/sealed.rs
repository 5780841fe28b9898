//! API secret keys at rest.
//!
//! HMAC verification needs the secret itself, so it cannot be hashed like a
//! password. Each secret is sealed with AES-256-GCM under a key-encryption
//! key (KEK) that lives outside the table (the `UFORGE_API_KEY_KEK`
//! environment variable, from Secrets Manager in production), with the login
//! and public key as associated data: a table dump reveals no secret, and a
//! sealed secret copied onto another user's or key's entry does not open.
//!
//! Stored form: `v1:` + base64(12-byte nonce ‖ ciphertext ‖ 16-byte tag).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the API key KEK must be 32 bytes, base64-encoded")]
    BadKek,
    #[error("sealed secret is malformed or does not open under this KEK")]
    Unsealable,
    #[error("no randomness available")]
    Random,
}

/// Seals and opens API secret keys under one KEK.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

// Never print key material.
impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(kek: &[u8; 32]) -> Self {
        Sealer {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek)),
        }
    }

    /// From the base64 text of the environment variable.
    pub fn from_base64(kek: &str) -> Result<Self, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(kek.trim())
            .map_err(|_| SealError::BadKek)?;
        let kek: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKek)?;
        Ok(Sealer::new(&kek))
    }

    /// A sealer under a fresh random KEK (the local server's default).
    pub fn random() -> Result<Self, SealError> {
        let mut kek = [0u8; 32];
        getrandom::getrandom(&mut kek).map_err(|_| SealError::Random)?;
        Ok(Sealer::new(&kek))
    }

    pub fn seal(&self, login: &str, public_key: &str, secret: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = aad(login, public_key);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Unsealable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    pub fn open(&self, login: &str, public_key: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|raw| raw.len() > NONCE_LEN)
            .ok_or(SealError::Unsealable)?;
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let aad = aad(login, public_key);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| SealError::Unsealable)
    }
}

fn aad(login: &str, public_key: &str) -> Vec<u8> {
    // Logins never contain NUL, so the encoding is unambiguous.
    format!("uforge-api-key:v1\0{login}\0{public_key}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open() {
        let s = Sealer::new(&[7; 32]);
        let sealed = s.seal("alice", "PUB", b"SECRETKEY456").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("SECRETKEY456"));
        assert_eq!(s.open("alice", "PUB", &sealed).unwrap(), b"SECRETKEY456");
        // Fresh nonce each time.
        assert_ne!(sealed, s.seal("alice", "PUB", b"SECRETKEY456").unwrap());
    }

    #[test]
    fn bound_to_login_public_key_and_kek() {
        let s = Sealer::new(&[7; 32]);
        let sealed = s.seal("alice", "PUB", b"SECRET").unwrap();
        assert_eq!(s.open("bob", "PUB", &sealed), Err(SealError::Unsealable));
        assert_eq!(s.open("alice", "PUB2", &sealed), Err(SealError::Unsealable));
        let other = Sealer::new(&[8; 32]);
        assert_eq!(
            other.open("alice", "PUB", &sealed),
            Err(SealError::Unsealable)
        );
        for bad in ["", "v1:", "v1:!!", "v2:AAAA", "SECRET"] {
            assert_eq!(
                s.open("alice", "PUB", bad),
                Err(SealError::Unsealable),
                "{bad}"
            );
        }
    }

    #[test]
    fn kek_from_base64() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(Sealer::from_base64(&b64).is_ok());
        assert_eq!(Sealer::from_base64("AAAA").err(), Some(SealError::BadKek));
        assert_eq!(
            Sealer::from_base64("not base64").err(),
            Some(SealError::BadKek)
        );
    }
}
