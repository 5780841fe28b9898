//! Who is calling: HTTP Basic or a UForge API-key signed URL.
//!
//! Parsing is pure and lives in the submodules; `authenticate` reads the
//! user record and checks the proof. Every failure is the same `Denied`, so
//! callers cannot tell an unknown login from a wrong password.

pub mod basic;
pub mod cache;
pub mod keks;
pub mod password;
pub mod sealed;
pub mod signed_url;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Login, User};
use crate::ports::{BackendError, Users};

pub use basic::BasicCredentials;
pub use cache::VerifiedCache;
pub use keks::{FixedKeks, KekSource};
pub use sealed::{SealError, Sealer};
pub use signed_url::SignedRequest;

/// The proof of identity a request carries.
#[derive(Debug)]
pub enum Credentials {
    Basic(BasicCredentials),
    /// An API-key signed URL. The principal it claims is the `{uid}` of the
    /// path (signed with it), so the key is looked up on that user only.
    SignedUrl(SignedRequest),
    /// No credentials, or credentials we could not parse.
    Missing,
}

impl Credentials {
    /// Reads the `Authorization` header(s), else the query. An
    /// `Authorization` header always wins: a request is authenticated one
    /// way only. Two or more `Authorization` headers are ambiguous (which
    /// one did a proxy check?) and authenticate nobody.
    pub fn from_request<'a>(
        mut authorization: impl Iterator<Item = &'a [u8]>,
        relative_path: &str,
        raw_query: &str,
    ) -> Credentials {
        match (authorization.next(), authorization.next()) {
            (Some(value), None) => {
                return basic::parse(value).map_or(Credentials::Missing, Credentials::Basic)
            }
            (Some(_), Some(_)) => return Credentials::Missing,
            (None, _) => {}
        }
        match signed_url::parse(relative_path, raw_query) {
            Ok(Some(req)) => Credentials::SignedUrl(req),
            Ok(None) | Err(_) => Credentials::Missing,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad, unknown or missing credentials, or an inactive user: one answer.
    #[error("authentication failed")]
    Denied,
    #[error("user store unavailable")]
    Backend(#[from] BackendError),
}

/// Checks credentials against the users store.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// `None` when no KEK is configured: API-key requests are then refused.
    keks: Option<Arc<dyn KekSource>>,
    /// Recently verified passwords; `None` verifies every request with Argon2.
    cache: Option<Arc<VerifiedCache>>,
}

/// The production cache: five minutes, bounded to a few thousand entries
/// (each 40-odd bytes).
pub const CACHE_TTL: Duration = Duration::from_secs(300);
pub const CACHE_CAPACITY: usize = 4096;

impl Authenticator {
    /// Without a verified-credential cache.
    pub fn new(keks: Option<Arc<dyn KekSource>>) -> Self {
        Authenticator { keks, cache: None }
    }

    /// With the production verified-credential cache.
    pub fn with_cache(keks: Option<Arc<dyn KekSource>>) -> Self {
        Authenticator {
            keks,
            cache: VerifiedCache::new(CACHE_TTL, CACHE_CAPACITY).map(Arc::new),
        }
    }

    /// How many verified credentials are cached (0 without a cache).
    pub fn cached_credentials(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    /// `path_uid` is the `{uid}` of the request path.
    pub async fn authenticate(
        &self,
        users: &impl Users,
        credentials: Credentials,
        path_uid: &Login,
    ) -> Result<User, AuthError> {
        match credentials {
            Credentials::Missing => Err(AuthError::Denied),
            Credentials::Basic(c) => self.basic(users, c).await,
            Credentials::SignedUrl(req) => self.signed(users, req, path_uid).await,
        }
    }

    async fn basic(&self, users: &impl Users, c: BasicCredentials) -> Result<User, AuthError> {
        // Read on every request, cache or not: disabling a user, revoking
        // an entitlement or changing a password takes effect at once.
        let user = users.get(&c.login).await?;
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let cached = match (&self.cache, &stored) {
            (Some(cache), Some(hash)) => cache.hit(c.login.as_str(), &c.password, hash),
            _ => false,
        };
        let verified = if cached {
            true
        } else {
            // Argon2 is ~tens of ms of CPU: keep it off the reactor threads.
            let cache = self.cache.clone();
            tokio::task::spawn_blocking(move || {
                let ok = password::verify(&c.password, stored.as_deref());
                if let (true, Some(cache), Some(hash)) = (ok, cache, stored) {
                    cache.remember(c.login.as_str(), &c.password, &hash);
                }
                ok
            })
            .await
            .unwrap_or(false)
        };
        match user {
            Some(u) if verified && u.active => Ok(u),
            _ => Err(AuthError::Denied),
        }
    }

    async fn signed(
        &self,
        users: &impl Users,
        req: SignedRequest,
        path_uid: &Login,
    ) -> Result<User, AuthError> {
        let Some(keks) = &self.keks else {
            return Err(AuthError::Denied);
        };
        let Some(user) = users.get(path_uid).await? else {
            return Err(AuthError::Denied);
        };
        let secret = match user.api_key(&req.public_key) {
            None => None,
            Some(k) => {
                // The KEKs are read on the first API-key request, not at start.
                let open = |sealer: &Sealer| {
                    sealer.open(user.login.as_str(), &k.public_key, &k.sealed_secret)
                };
                match open(&*keks.sealer(None).await?) {
                    // Sealed under a KEK newer than ours: a rotation happened.
                    Err(SealError::UnknownKey(id)) => open(&*keks.sealer(Some(id)).await?).ok(),
                    opened => opened.ok(),
                }
            }
        };
        match secret {
            Some(secret) if user.active && signed_url::verify(&secret, &req) => Ok(user),
            _ => Err(AuthError::Denied),
        }
    }
}
