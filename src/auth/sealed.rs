//! API secret keys at rest.
//!
//! HMAC verification needs the secret itself, so it cannot be hashed like a
//! password. Each secret is sealed with AES-256-GCM under a key-encryption
//! key (KEK) that lives outside the table (a Secrets Manager secret in
//! production, read at run time), with the login and public key as
//! associated data: a table dump reveals no secret, and a sealed secret
//! copied onto another user's or key's entry does not open.
//!
//! Rotation: a [`Sealer`] holds the current KEK and, during a rotation, the
//! previous one. Secrets are sealed under the current KEK and name it:
//!
//! - `v2:<key id>:` + base64(12-byte nonce ‖ ciphertext ‖ 16-byte tag), where
//!   the key id is the first 4 bytes of SHA-256 over a label and the KEK, in
//!   hex: it names a key without revealing anything about it;
//! - `v1:` + the same base64, sealed before key ids existed: tried under the
//!   current KEK, then the previous one.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const V1: &str = "v1:";
const V2: &str = "v2:";
const NONCE_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the API key KEK must be 32 bytes, base64-encoded")]
    BadKek,
    #[error("sealed secret is malformed or does not open under this KEK")]
    Unsealable,
    /// Sealed under a KEK this sealer does not hold (yet): after a rotation,
    /// the holder of the KEKs may have newer ones.
    #[error("sealed secret names KEK {0}, which is not loaded")]
    UnknownKey(KeyId),
    #[error("no randomness available")]
    Random,
}

/// The public name of a KEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl KeyId {
    fn of(kek: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"uforge-api-key-kek-id:v1\0")
            .chain_update(kek)
            .finalize();
        KeyId([digest[0], digest[1], digest[2], digest[3]])
    }

    fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 8 || !hex.is_ascii() {
            return None;
        }
        let mut id = [0u8; 4];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyId(id))
    }
}

#[derive(Clone)]
struct Kek {
    id: KeyId,
    cipher: Aes256Gcm,
}

impl Kek {
    fn new(kek: &[u8; 32]) -> Self {
        Kek {
            id: KeyId::of(kek),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek)),
        }
    }

    fn open(&self, aad: &[u8], raw: &[u8]) -> Result<Vec<u8>, SealError> {
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SealError::Unsealable)
    }
}

/// Seals under the current KEK; opens under the current or previous one.
#[derive(Clone)]
pub struct Sealer {
    current: Kek,
    previous: Option<Kek>,
}

// Never print key material.
impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(current {}", self.current.id)?;
        if let Some(p) = &self.previous {
            write!(f, ", previous {}", p.id)?;
        }
        f.write_str(")")
    }
}

/// Decodes a KEK as it is stored: base64 of exactly 32 bytes.
pub fn decode_kek(text: &str) -> Result<[u8; 32], SealError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| SealError::BadKek)?;
    bytes.try_into().map_err(|_| SealError::BadKek)
}

impl Sealer {
    pub fn new(kek: &[u8; 32]) -> Self {
        Sealer {
            current: Kek::new(kek),
            previous: None,
        }
    }

    /// Also opens what was sealed under `previous` (during a rotation).
    pub fn with_previous(mut self, previous: &[u8; 32]) -> Self {
        let previous = Kek::new(previous);
        if previous.id != self.current.id {
            self.previous = Some(previous);
        }
        self
    }

    /// From the base64 text of a KEK.
    pub fn from_base64(kek: &str) -> Result<Self, SealError> {
        Ok(Sealer::new(&decode_kek(kek)?))
    }

    /// A sealer under a fresh random KEK (the local server's default).
    pub fn random() -> Result<Self, SealError> {
        let mut kek = [0u8; 32];
        getrandom::getrandom(&mut kek).map_err(|_| SealError::Random)?;
        Ok(Sealer::new(&kek))
    }

    /// The id of the KEK new secrets are sealed under.
    pub fn current_id(&self) -> KeyId {
        self.current.id
    }

    pub fn seal(&self, login: &str, public_key: &str, secret: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = aad(login, public_key);
        let ct = self
            .current
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
            "{V2}{}:{}",
            self.current.id,
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    pub fn open(&self, login: &str, public_key: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let aad = aad(login, public_key);
        match parse(sealed)? {
            (Some(id), raw) => self
                .keys()
                .find(|k| k.id == id)
                .ok_or(SealError::UnknownKey(id))?
                .open(&aad, &raw),
            (None, raw) => self
                .keys()
                .find_map(|k| k.open(&aad, &raw).ok())
                .ok_or(SealError::Unsealable),
        }
    }

    /// Whether `sealed` is already sealed under the current KEK, with its id
    /// (nothing for a re-seal to do).
    pub fn is_current(&self, sealed: &str) -> bool {
        matches!(parse(sealed), Ok((Some(id), _)) if id == self.current.id)
    }

    /// Whether this sealer holds the KEK named `id`.
    pub fn holds(&self, id: KeyId) -> bool {
        self.keys().any(|k| k.id == id)
    }

    fn keys(&self) -> impl Iterator<Item = &Kek> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }
}

/// The key id (`None` for `v1`) and the nonce ‖ ciphertext ‖ tag.
fn parse(sealed: &str) -> Result<(Option<KeyId>, Vec<u8>), SealError> {
    let (id, body) = if let Some(rest) = sealed.strip_prefix(V2) {
        let (id, body) = rest.split_once(':').ok_or(SealError::Unsealable)?;
        (Some(KeyId::parse(id).ok_or(SealError::Unsealable)?), body)
    } else {
        (None, sealed.strip_prefix(V1).ok_or(SealError::Unsealable)?)
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .filter(|raw| raw.len() > NONCE_LEN)
        .ok_or(SealError::Unsealable)?;
    Ok((id, raw))
}

fn aad(login: &str, public_key: &str) -> Vec<u8> {
    // Logins never contain NUL, so the encoding is unambiguous. The label
    // stays "v1": it versions the associated data, not the stored form.
    format!("uforge-api-key:v1\0{login}\0{public_key}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open() {
        let s = Sealer::new(&[7; 32]);
        let sealed = s.seal("alice", "PUB", b"SECRETKEY456").unwrap();
        assert!(sealed.starts_with(&format!("v2:{}:", s.current_id())));
        assert!(!sealed.contains("SECRETKEY456"));
        assert_eq!(s.open("alice", "PUB", &sealed).unwrap(), b"SECRETKEY456");
        // Fresh nonce each time.
        assert_ne!(sealed, s.seal("alice", "PUB", b"SECRETKEY456").unwrap());
        assert!(s.is_current(&sealed));
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
            Err(SealError::UnknownKey(s.current_id()))
        );
        // A forged key id does not help: the tag is checked under that key.
        let forged = sealed.replacen(
            &s.current_id().to_string(),
            &other.current_id().to_string(),
            1,
        );
        assert_eq!(
            other.open("alice", "PUB", &forged),
            Err(SealError::Unsealable)
        );
        for bad in [
            "",
            "v1:",
            "v1:!!",
            "v2:AAAA",
            "v2:zzzzzzzz:AAAA",
            "v2::AAAA",
            "v3:x",
            "SECRET",
        ] {
            assert!(s.open("alice", "PUB", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_ids_name_keys_without_revealing_them() {
        let a = KeyId::of(&[1; 32]);
        assert_eq!(a, KeyId::of(&[1; 32]));
        assert_ne!(a, KeyId::of(&[2; 32]));
        assert_eq!(a.to_string().len(), 8);
        assert_eq!(KeyId::parse(&a.to_string()), Some(a));
        for bad in ["", "0011223", "001122334", "zz112233", "ééé"] {
            assert_eq!(KeyId::parse(bad), None, "{bad}");
        }
        let text = format!("{:?}", Sealer::new(&[1; 32]));
        assert!(!text.contains("[1"), "{text}");
        assert_eq!(text, format!("Sealer(current {a})"));
    }

    #[test]
    fn a_rotation_keeps_every_secret_open() {
        let old = Sealer::new(&[1; 32]);
        let under_old = old.seal("alice", "PUB", b"S1").unwrap();
        // v1, as sealed before key ids (same layout, no id).
        let v1 = format!("v1:{}", under_old.rsplit(':').next().unwrap());
        let rotated = Sealer::new(&[2; 32]).with_previous(&[1; 32]);
        assert_eq!(rotated.open("alice", "PUB", &under_old).unwrap(), b"S1");
        assert_eq!(rotated.open("alice", "PUB", &v1).unwrap(), b"S1");
        assert!(!rotated.is_current(&under_old) && !rotated.is_current(&v1));
        let resealed = rotated.seal("alice", "PUB", b"S1").unwrap();
        assert!(rotated.is_current(&resealed));
        // Once the old key is retired, only the re-sealed form opens.
        let next = Sealer::new(&[3; 32]).with_previous(&[2; 32]);
        assert_eq!(next.open("alice", "PUB", &resealed).unwrap(), b"S1");
        assert_eq!(
            next.open("alice", "PUB", &under_old),
            Err(SealError::UnknownKey(old.current_id()))
        );
        assert!(next.holds(rotated.current_id()) && !next.holds(old.current_id()));
        assert_eq!(next.open("alice", "PUB", &v1), Err(SealError::Unsealable));
        // A "previous" equal to the current key is no second key.
        assert!(Sealer::new(&[1; 32])
            .with_previous(&[1; 32])
            .previous
            .is_none());
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
