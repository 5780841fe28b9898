//! The operator's port (`uforge-admin`): users, API keys, publish records.

use std::future::Future;

use super::BackendError;
use crate::domain::{Login, PublishKey, PublishRecord};

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
    /// A conditional write found the record other than it was read (a
    /// cancel, a claim or another operator got there first).
    #[error("publish {0} changed since it was read; look at it again")]
    Changed(PublishKey),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What an operator's put may replace: nothing (the record must be new), or
/// the record exactly as it was read (a conditional write).
#[derive(Debug, Clone, Copy)]
pub enum Replacing<'a> {
    Nothing,
    Read(&'a PublishRecord),
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
    /// Writes `record` if the stored one is still what `replacing` says
    /// (`AdminError::Changed` otherwise). Whether it may be replaced at all
    /// is `admin::put_publish`'s to decide.
    fn put_publish(
        &self,
        record: &PublishRecord,
        replacing: Replacing<'_>,
    ) -> impl Future<Output = Result<(), AdminError>>;
    fn publish(
        &self,
        key: &PublishKey,
    ) -> impl Future<Output = Result<Option<PublishRecord>, AdminError>>;
}
