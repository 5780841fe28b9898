//! Operator tooling behind the `uforge-admin` binary: users, entitlements,
//! API keys and publish records, on DynamoDB (real or emulated) or on a
//! local server's seed file. Secrets are generated here and shown once.

mod dynamodb_store;
mod seed_file_store;

use std::future::Future;

use crate::domain::{Login, PublishKey, PublishRecord};
use crate::ports::BackendError;

pub use dynamodb_store::{create_queue, create_tables, DynamoAdmin, RepairReport, ResealReport};
pub use seed_file_store::SeedFileAdmin;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("user {0} does not exist")]
    NoSuchUser(Login),
    #[error("user {0} already exists")]
    UserExists(Login),
    #[error("user {0} has no API key {1}")]
    NoSuchKey(Login, String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What an operator sees of a user: never a hash or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub login: Login,
    pub active: bool,
    pub has_password: bool,
    pub entitlements: Vec<String>,
    pub api_keys: Vec<String>,
}

/// One place where users and publishes are administered.
pub trait AdminStore {
    fn create_user(
        &self,
        login: &Login,
        password_hash: Option<String>,
        entitlements: &[String],
        active: bool,
    ) -> impl Future<Output = Result<(), AdminError>>;
    fn set_password(
        &self,
        login: &Login,
        hash: String,
    ) -> impl Future<Output = Result<(), AdminError>>;
    fn set_active(
        &self,
        login: &Login,
        active: bool,
    ) -> impl Future<Output = Result<(), AdminError>>;
    fn grant(
        &self,
        login: &Login,
        entitlement: &str,
    ) -> impl Future<Output = Result<(), AdminError>>;
    fn revoke(
        &self,
        login: &Login,
        entitlement: &str,
    ) -> impl Future<Output = Result<(), AdminError>>;
    /// Stores a key pair (sealing the secret where the store needs it).
    fn add_api_key(
        &self,
        login: &Login,
        public_key: &str,
        secret_key: &str,
    ) -> impl Future<Output = Result<(), AdminError>>;
    fn remove_api_key(
        &self,
        login: &Login,
        public_key: &str,
    ) -> impl Future<Output = Result<(), AdminError>>;
    fn user(&self, login: &Login) -> impl Future<Output = Result<Option<UserSummary>, AdminError>>;
    fn put_publish(&self, record: &PublishRecord) -> impl Future<Output = Result<(), AdminError>>;
    fn publish(
        &self,
        key: &PublishKey,
    ) -> impl Future<Output = Result<Option<PublishRecord>, AdminError>>;
}

/// A new API key pair: a public key (20 characters) and a secret (40), both
/// from the OS RNG, in an alphabet that needs no URL escaping.
pub fn new_key_pair() -> Result<(String, String), AdminError> {
    Ok((random_token(20)?, random_token(40)?))
}

fn random_token(len: usize) -> Result<String, AdminError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::getrandom(&mut buf)
            .map_err(|e| AdminError::Invalid(format!("no randomness: {e}")))?;
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if (b as usize) < 248 && out.len() < len {
                out.push(ALPHABET[b as usize % 62] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pairs_are_random_and_url_safe() {
        let (p1, s1) = new_key_pair().unwrap();
        let (p2, s2) = new_key_pair().unwrap();
        assert_eq!((p1.len(), s1.len()), (20, 40));
        assert_ne!(p1, p2);
        assert_ne!(s1, s2);
        assert!(p1
            .bytes()
            .chain(s1.bytes())
            .all(|b| b.is_ascii_alphanumeric()));
    }
}
