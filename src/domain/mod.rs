//! The domain: what a publish, a user and their identifiers are, with no I/O.

mod attempt;
mod audit;
mod ids;
mod publish;
mod request_id;
mod shard;
mod user;

pub use attempt::{AttemptToken, Claim, MAX_CLAIM_AHEAD};
pub use audit::{
    is_display_text, is_noncharacter, AuditText, CancelAudit, CancelSource, InvalidAudit,
};
pub use ids::{ApplianceId, ImageId, InvalidId, InvalidLogin, Login, PublishId, PublishKey};
pub use publish::{CancelStamp, PublishRecord, PublishState, Timestamp, UnknownState};
pub use request_id::{InvalidRequestId, RequestId};
pub use shard::{InvalidShards, PendingShards, Shard};
pub use user::{ApiKey, User, IMAGE_PUBLISH};

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Alice's publish `1/2/{pitid}`.
    pub(crate) fn alice_key(pitid: i64) -> PublishKey {
        PublishKey {
            uid: Login::parse("alice").unwrap_or_else(|_| unreachable!()),
            aid: 1.into(),
            itid: 2.into(),
            pitid: pitid.into(),
        }
    }

    /// An HTTP cancel by alice, request id `id`, at `at` (seconds).
    pub(crate) fn alice_stamp(id: &str, at: i64) -> CancelStamp {
        CancelStamp::new(
            id.into(),
            Timestamp(at),
            CancelAudit::http(&alice_key(0).uid),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What logs and error messages show of each type: the names the docs
    /// use, the values a reader needs, never an API key's sealed secret.
    #[test]
    fn display_and_debug_forms() {
        for state in PublishState::ALL {
            assert_eq!(state.to_string(), state.as_str());
        }
        for source in CancelSource::ALL {
            assert_eq!(source.to_string(), source.as_str());
        }
        let alice = Login::parse("alice").unwrap();
        assert_eq!(format!("{alice:?}"), "Login(alice)");
        assert_eq!(
            format!("{:?}", RequestId::from_stored("r-1")),
            "RequestId(r-1)"
        );
        let attempt = AttemptToken::from_bytes([0xab; 16]);
        assert_eq!(format!("{attempt:?}"), format!("AttemptToken({attempt})"));
        let key = ApiKey {
            public_key: "PUB".into(),
            sealed_secret: "SEALED".into(),
        };
        let text = format!("{key:?}");
        assert!(text.contains("PUB") && !text.contains("SEALED"), "{text}");
        let user = User {
            login: alice,
            password_hash: Some("$argon2id$HASH".into()),
            active: true,
            entitlements: vec![IMAGE_PUBLISH.into()],
            api_keys: vec![key],
        };
        let text = format!("{user:?}");
        assert!(
            text.contains("alice") && text.contains(IMAGE_PUBLISH),
            "{text}"
        );
        assert!(!text.contains("HASH") && !text.contains("SEALED"), "{text}");
        assert!(user.api_key("PUB").is_some() && user.api_key("PUBX").is_none());
    }
}
