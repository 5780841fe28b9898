//! A UForge user as far as this endpoint needs one.

use super::ids::Login;

/// The entitlement UForge requires for every publish operation.
pub const IMAGE_PUBLISH: &str = "image_publish";

/// One API key pair. Only the public half is stored in clear; the secret is
/// sealed (see `auth::sealed`) because HMAC verification needs it back.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub public_key: String,
    pub sealed_secret: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// A stored user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub login: Login,
    /// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`); `None` for users
    /// that may only use API keys.
    pub password_hash: Option<String>,
    pub active: bool,
    pub entitlements: Vec<String>,
    pub api_keys: Vec<ApiKey>,
}

impl User {
    pub fn has_entitlement(&self, name: &str) -> bool {
        self.entitlements.iter().any(|e| e == name)
    }

    pub fn api_key(&self, public_key: &str) -> Option<&ApiKey> {
        self.api_keys.iter().find(|k| k.public_key == public_key)
    }
}

// Hand-written so that a `{:?}` in a log line can never print a hash or a
// sealed secret.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("login", &self.login)
            .field("active", &self.active)
            .field("entitlements", &self.entitlements)
            .field("api_keys", &self.api_keys.len())
            .finish_non_exhaustive()
    }
}
