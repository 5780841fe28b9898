//! The access gate every route goes through: who is calling (HTTP Basic or
//! an API-key signed URL), whether they hold the route's entitlement, and
//! whether they are the `{uid}` of the path. Nothing of a publish is looked
//! at before it lets a request through; what it lets through carries the
//! key it checked (`Admitted`), so a route cannot act on another.

use crate::auth::{AuthError, AuthTrace, Authenticator, Credentials};
use crate::domain::{PublishKey, User};
use crate::ports::{BackendError, Users};

/// Why the gate refused, in the order it checks.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Bad, unknown or missing credentials, or an inactive user: one answer.
    #[error("authentication failed")]
    Unauthenticated,
    #[error("caller lacks the {0} entitlement")]
    MissingEntitlement(&'static str),
    #[error("caller is not the owner of the publish")]
    NotOwner,
    #[error("the users store is unavailable")]
    Backend(#[source] BackendError),
}

/// A request the gate let through: its caller, and the key it may act on.
#[derive(Debug)]
pub struct Admitted {
    pub user: User,
    pub key: PublishKey,
}

/// Checks callers against the users store.
#[derive(Debug)]
pub struct Gate<U> {
    pub users: U,
    pub auth: Authenticator,
}

impl<U: Users> Gate<U> {
    /// Lets `credentials` act on `key` if they prove a caller who holds
    /// `entitlement` and is `key`'s `{uid}`. The trace says how the
    /// credentials were checked (for metrics and logs, never clients).
    pub async fn admit(
        &self,
        credentials: Credentials,
        key: PublishKey,
        entitlement: &'static str,
    ) -> (Result<Admitted, AccessError>, AuthTrace) {
        let (user, trace) = self
            .auth
            .authenticate(&self.users, credentials, &key.uid)
            .await;
        let admitted = match user {
            Err(AuthError::Denied) => Err(AccessError::Unauthenticated),
            Err(AuthError::Backend(e)) => Err(AccessError::Backend(e)),
            Ok(user) if !user.has_entitlement(entitlement) => {
                Err(AccessError::MissingEntitlement(entitlement))
            }
            Ok(user) if user.login != key.uid => Err(AccessError::NotOwner),
            Ok(user) => Ok(Admitted { user, key }),
        };
        (admitted, trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryUsers;
    use crate::auth::{BasicCredentials, Sealer};
    use crate::domain::{Login, IMAGE_PUBLISH};
    use crate::seed::{Seed, BUNDLED};

    fn gate() -> Gate<MemoryUsers> {
        let users = Seed::parse(BUNDLED)
            .unwrap()
            .users(&Sealer::new(&[3; 32]))
            .unwrap()
            .into_iter()
            .collect();
        Gate {
            users,
            auth: Authenticator::new(None),
        }
    }

    fn basic(login: &str, password: &str) -> Credentials {
        Credentials::Basic(BasicCredentials {
            login: Login::parse(login).unwrap(),
            password: password.into(),
        })
    }

    fn key(uid: &str) -> PublishKey {
        PublishKey {
            uid: Login::parse(uid).unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        }
    }

    #[tokio::test]
    async fn in_order_credentials_entitlement_owner() {
        let gate = gate();
        let cases = [
            (basic("alice", "wrong"), "alice", "Unauthenticated"),
            (Credentials::Missing, "alice", "Unauthenticated"),
            (
                basic("carol", "carol-password"),
                "carol",
                "MissingEntitlement",
            ),
            // Not entitled and not the owner: the entitlement is checked first.
            (
                basic("carol", "carol-password"),
                "alice",
                "MissingEntitlement",
            ),
            (basic("bob", "bob-password"), "alice", "NotOwner"),
        ];
        for (credentials, uid, want) in cases {
            let (admitted, _) = gate.admit(credentials, key(uid), IMAGE_PUBLISH).await;
            let err = admitted.unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{uid}: {err:?}");
        }
        let (admitted, _) = gate
            .admit(
                basic("alice", "alice-password"),
                key("alice"),
                IMAGE_PUBLISH,
            )
            .await;
        let admitted = admitted.unwrap();
        assert_eq!(
            (admitted.user.login.as_str(), admitted.key),
            ("alice", key("alice"))
        );
    }
}
