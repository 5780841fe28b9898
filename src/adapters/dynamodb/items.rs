//! Items of the users and publishes tables <-> the domain's users and
//! publish records: the one place that knows attribute names and types
//! (schemas in docs/data.md; the tables themselves in template.yaml).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{
    ApiKey, ApplianceId, AttemptToken, AuditText, CancelAudit, CancelSource, CancelStamp, Claim,
    ImageId, Login, PendingShards, PublishId, PublishKey, PublishRecord, PublishState, RequestId,
    Timestamp, User,
};
use crate::ports::BackendError;

pub type Item = HashMap<String, AttributeValue>;

/// Attribute names, shared by the adapters, the tests and docs/data.md.
pub mod attr {
    // users table
    pub const LOGIN: &str = "login";
    pub const PASSWORD_HASH: &str = "passwordHash";
    pub const ACTIVE: &str = "active";
    pub const ENTITLEMENTS: &str = "entitlements";
    pub const API_KEYS: &str = "apiKeys";
    // publishes table
    pub const UID: &str = "uid";
    pub const PUBLISH_KEY: &str = "publishKey";
    pub const AID: &str = "aid";
    pub const ITID: &str = "itid";
    pub const PITID: &str = "pitid";
    pub const STATE: &str = "state";
    pub const CREATED: &str = "createdAt";
    pub const LAST_MODIFIED: &str = "lastModified";
    pub const PERCENTAGE: &str = "percentage";
    pub const BYTES_LOADED: &str = "bytesLoaded";
    pub const BYTES_TOTAL: &str = "bytesTotal";
    pub const MESSAGE: &str = "message";
    pub const ERROR_MESSAGE: &str = "errorMessage";
    pub const CANCEL_REQUEST_ID: &str = "cancelRequestId";
    pub const CANCELLED_AT: &str = "cancelledAt";
    // The cancel's audit, written with it.
    pub const CANCEL_SOURCE: &str = "cancelSource";
    pub const CANCELLED_BY: &str = "cancelledBy";
    pub const CANCEL_REASON: &str = "cancelReason";
    pub const CANCEL_REQUESTED_BY: &str = "cancelRequestedBy";
    pub const CANCEL_ORIGIN: &str = "cancelOrigin";
    /// Present while a cancel's stop is unconfirmed; its value is the
    /// mark's shard of the index (`domain::Shard`: `pending-{n}`, or
    /// `pending` as releases before sharding wrote it).
    pub const STOP_PENDING: &str = "stopPending";
    /// When the send attempt in flight for the pending stop began.
    pub const STOP_CLAIMED_AT: &str = "stopClaimedAt";
    /// That attempt's token (`AttemptToken`).
    pub const STOP_CLAIMED_BY: &str = "stopClaimedBy";
    /// The token of the attempt that made the transition to `cancelled`.
    pub const CANCEL_ATTEMPT: &str = "cancelAttempt";
    /// Why SQS refused the stop for good (then no longer pending).
    pub const STOP_UNDELIVERABLE: &str = "stopUndeliverable";
}

/// The sparse GSI of the publishes table: only records with `stopPending`
/// appear, keyed by (`stopPending`, `cancelledAt`): one partition key
/// value per shard (`domain::PendingShards`).
pub const PENDING_STOPS_INDEX: &str = "pendingStops";

/// The sort key of a publish under its user: `{aid}/{itid}/{pitid}`.
pub fn publish_sort_key(key: &PublishKey) -> String {
    format!("{}/{}/{}", key.aid, key.itid, key.pitid)
}

/// The primary key of a publish item: (`uid`, `publishKey`).
pub fn publish_item_key(key: &PublishKey) -> Item {
    HashMap::from([
        (attr::UID.to_owned(), AttributeValue::S(key.uid.to_string())),
        (
            attr::PUBLISH_KEY.to_owned(),
            AttributeValue::S(publish_sort_key(key)),
        ),
    ])
}

/// Reads a user item. `login` comes from the key we asked for.
pub fn user_from_item(login: &Login, item: &Item) -> Result<User, BackendError> {
    let api_keys = match item.get(attr::API_KEYS) {
        Some(AttributeValue::M(m)) => m
            .iter()
            .filter_map(|(public, sealed)| {
                sealed.as_s().ok().map(|s| ApiKey {
                    public_key: public.clone(),
                    sealed_secret: s.clone(),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(User {
        login: login.clone(),
        password_hash: item
            .get(attr::PASSWORD_HASH)
            .and_then(|v| v.as_s().ok())
            .cloned(),
        // Fail closed: an item without the flag is not an active user.
        active: matches!(item.get(attr::ACTIVE), Some(AttributeValue::Bool(true))),
        entitlements: match item.get(attr::ENTITLEMENTS) {
            Some(AttributeValue::Ss(v)) => v.clone(),
            Some(AttributeValue::L(v)) => v.iter().filter_map(|e| e.as_s().ok().cloned()).collect(),
            _ => Vec::new(),
        },
        api_keys,
    })
}

/// The item for a user, as the operator tooling and tests write it.
pub fn user_to_item(user: &User) -> Item {
    let mut item = Item::new();
    item.insert(
        attr::LOGIN.into(),
        AttributeValue::S(user.login.to_string()),
    );
    item.insert(attr::ACTIVE.into(), AttributeValue::Bool(user.active));
    if let Some(h) = &user.password_hash {
        item.insert(attr::PASSWORD_HASH.into(), AttributeValue::S(h.clone()));
    }
    if !user.entitlements.is_empty() {
        item.insert(
            attr::ENTITLEMENTS.into(),
            AttributeValue::Ss(user.entitlements.clone()),
        );
    }
    if !user.api_keys.is_empty() {
        let keys = user
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.public_key.clone(),
                    AttributeValue::S(k.sealed_secret.clone()),
                )
            })
            .collect();
        item.insert(attr::API_KEYS.into(), AttributeValue::M(keys));
    }
    item
}

/// The key of a publish item, from its primary key (`uid`, `publishKey`),
/// the only attributes that address it: `aid`, `itid` and `pitid` are
/// copies for readers and may be missing or wrong in items written by
/// hand. A `publishKey` that is not exactly how we spell a key (`01/2/3`,
/// say) cannot be addressed by one, so it is an error too.
pub fn key_from_item(item: &Item) -> Result<PublishKey, BackendError> {
    let uid = get_s(item, attr::UID)
        .and_then(|u| Login::parse(u).ok())
        .ok_or_else(|| BackendError::msg("publish item has no valid uid"))?;
    let sort = get_s(item, attr::PUBLISH_KEY)
        .ok_or_else(|| BackendError::msg("publish item has no publishKey"))?;
    let parsed = match sort.split('/').collect::<Vec<_>>()[..] {
        [aid, itid, pitid] => match (
            ApplianceId::parse(aid),
            ImageId::parse(itid),
            PublishId::parse(pitid),
        ) {
            (Ok(aid), Ok(itid), Ok(pitid)) => Some(PublishKey {
                uid,
                aid,
                itid,
                pitid,
            }),
            _ => None,
        },
        _ => None,
    };
    parsed
        .filter(|key| publish_sort_key(key) == *sort)
        .ok_or_else(|| BackendError::msg("publish item's publishKey is not aid/itid/pitid"))
}

pub(super) fn state_value(s: PublishState) -> AttributeValue {
    AttributeValue::S(s.as_str().to_owned())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a String> {
    item.get(name).and_then(|v| v.as_s().ok())
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// The audit of a cancel as stored. Items cancelled before the audit
/// existed (or written by hand) read with the documented defaults: a
/// missing or unknown `cancelSource` is `http` and a missing or invalid
/// `cancelledBy` is the record's `uid` (before automation, only the owner
/// could cancel, over HTTP); an invalid `cancelReason` or
/// `cancelRequestedBy` or `cancelOrigin` reads as absent.
fn audit_from_item(key: &PublishKey, item: &Item) -> CancelAudit {
    let text = |name| get_s(item, name).and_then(|v| AuditText::parse(v).ok());
    let source = get_s(item, attr::CANCEL_SOURCE).and_then(|s| s.parse().ok());
    match source {
        Some(source) => CancelAudit {
            source,
            cancelled_by: text(attr::CANCELLED_BY)
                .unwrap_or_else(|| CancelAudit::http(&key.uid).cancelled_by),
            reason: text(attr::CANCEL_REASON),
            requested_by: text(attr::CANCEL_REQUESTED_BY),
            origin: text(attr::CANCEL_ORIGIN),
        },
        None => CancelAudit {
            source: CancelSource::Http,
            ..CancelAudit::http(&key.uid)
        },
    }
}

/// The stamp of a cancel, as stored; `None` for an item no cancel of
/// ours stamped. A half-stamped item reads whole: a missing
/// `cancelRequestId` as an id derived from the key, a missing `cancelledAt`
/// as `lastModified` (else 0), so every pending stop can still be sent.
fn stamp_from_item(key: &PublishKey, item: &Item) -> Option<CancelStamp> {
    let id = get_s(item, attr::CANCEL_REQUEST_ID);
    let at = get_n::<i64>(item, attr::CANCELLED_AT);
    if id.is_none() && at.is_none() && !item.contains_key(attr::STOP_PENDING) {
        return None;
    }
    Some(CancelStamp::new(
        match id {
            Some(id) => RequestId::from_stored(id),
            None => RequestId::derived(format!("unstamped:{key}").as_bytes()),
        },
        Timestamp(at.or_else(|| get_n(item, attr::LAST_MODIFIED)).unwrap_or(0)),
        audit_from_item(key, item),
    ))
}

/// The attribute values that record `audit`, for the cancel's write.
pub fn audit_values(audit: &CancelAudit) -> Vec<(&'static str, AttributeValue)> {
    let mut out = vec![
        (
            attr::CANCEL_SOURCE,
            AttributeValue::S(audit.source.as_str().to_owned()),
        ),
        (
            attr::CANCELLED_BY,
            AttributeValue::S(audit.cancelled_by.to_string()),
        ),
    ];
    if let Some(r) = &audit.reason {
        out.push((attr::CANCEL_REASON, AttributeValue::S(r.to_string())));
    }
    if let Some(r) = &audit.requested_by {
        out.push((attr::CANCEL_REQUESTED_BY, AttributeValue::S(r.to_string())));
    }
    if let Some(o) = &audit.origin {
        out.push((attr::CANCEL_ORIGIN, AttributeValue::S(o.to_string())));
    }
    out
}

/// Reads a publish item stored under `key`. Total for every item whose
/// `state` is one we know: attributes of the wrong type read as absent,
/// and a cancel's stamp as `stamp_from_item` says. Only an item without a
/// known state is an error (nothing safe can be said about it).
pub fn record_from_item(key: &PublishKey, item: &Item) -> Result<PublishRecord, BackendError> {
    let state: PublishState = get_s(item, attr::STATE)
        .ok_or_else(|| BackendError::msg("publish item has no state"))?
        .parse()
        .map_err(|e| BackendError::new("publish item has an unknown state", e))?;
    Ok(PublishRecord {
        key: key.clone(),
        state,
        created: get_n(item, attr::CREATED).map(Timestamp),
        last_modified: get_n(item, attr::LAST_MODIFIED).map(Timestamp),
        percentage: get_n(item, attr::PERCENTAGE),
        bytes_loaded: get_n(item, attr::BYTES_LOADED),
        bytes_total: get_n(item, attr::BYTES_TOTAL),
        message: get_s(item, attr::MESSAGE).cloned(),
        error_message: get_s(item, attr::ERROR_MESSAGE).cloned(),
        cancel: stamp_from_item(key, item),
        cancel_attempt: get_s(item, attr::CANCEL_ATTEMPT).and_then(|t| AttemptToken::parse(t)),
        // Pending: a cancelled record with the mark (docs/data.md). A mark
        // on any other record is never acted on (the reconciler reports it).
        stop_pending: state == PublishState::Cancelled && item.contains_key(attr::STOP_PENDING),
        stop_claim: claim_from_item(item),
        stop_undeliverable: get_s(item, attr::STOP_UNDELIVERABLE).cloned(),
    })
}

/// The claim on a pending stop, as stored: a claim without its time (only
/// by hand) reads as long lapsed, one without a token as nobody's.
fn claim_from_item(item: &Item) -> Option<Claim> {
    let at = get_n::<i64>(item, attr::STOP_CLAIMED_AT);
    let by = get_s(item, attr::STOP_CLAIMED_BY).and_then(|t| AttemptToken::parse(t));
    if at.is_none() && by.is_none() {
        return None;
    }
    Some(Claim {
        at: Timestamp(at.unwrap_or(0)),
        by,
    })
}

/// The stored key of an item, for reports of items that cannot be read.
pub fn describe_item_key(item: &Item) -> String {
    let show = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => format!("{s:?}"),
        Some(AttributeValue::N(n)) => n.clone(),
        Some(_) => "(not a string)".to_owned(),
        None => "(absent)".to_owned(),
    };
    format!(
        "{}={} {}={}",
        attr::UID,
        show(attr::UID),
        attr::PUBLISH_KEY,
        show(attr::PUBLISH_KEY)
    )
}

/// The item for a publish, as workers, the operator tooling and tests
/// write it; a pending stop's mark goes to its shard of `shards`.
pub fn record_to_item(r: &PublishRecord, shards: PendingShards) -> Item {
    let mut item = Item::new();
    let mut s = |k: &str, v: String| {
        item.insert(k.to_owned(), AttributeValue::S(v));
    };
    s(attr::UID, r.key.uid.to_string());
    s(attr::PUBLISH_KEY, publish_sort_key(&r.key));
    s(attr::STATE, r.state.as_str().to_owned());
    if let Some(m) = &r.message {
        s(attr::MESSAGE, m.clone());
    }
    if let Some(m) = &r.error_message {
        s(attr::ERROR_MESSAGE, m.clone());
    }
    if let Some(c) = &r.cancel {
        s(attr::CANCEL_REQUEST_ID, c.request_id.to_string());
    }
    if let Some(t) = &r.cancel_attempt {
        s(attr::CANCEL_ATTEMPT, t.to_string());
    }
    if let Some(by) = r.stop_claim.as_ref().and_then(|c| c.by.as_ref()) {
        s(attr::STOP_CLAIMED_BY, by.to_string());
    }
    if r.stop_pending {
        s(attr::STOP_PENDING, shards.of(&r.key).value());
    }
    if let Some(why) = &r.stop_undeliverable {
        s(attr::STOP_UNDELIVERABLE, why.clone());
    }
    let mut n = |k: &str, v: Option<i64>| {
        if let Some(v) = v {
            item.insert(k.to_owned(), AttributeValue::N(v.to_string()));
        }
    };
    n(attr::AID, Some(r.key.aid.get()));
    n(attr::ITID, Some(r.key.itid.get()));
    n(attr::PITID, Some(r.key.pitid.get()));
    n(attr::CREATED, r.created.map(|t| t.0));
    n(attr::LAST_MODIFIED, r.last_modified.map(|t| t.0));
    n(attr::PERCENTAGE, r.percentage.map(i64::from));
    n(attr::BYTES_LOADED, r.bytes_loaded);
    n(attr::BYTES_TOTAL, r.bytes_total);
    n(attr::CANCELLED_AT, r.cancel.as_ref().map(|c| c.at.0));
    n(attr::STOP_CLAIMED_AT, r.stop_claim.as_ref().map(|c| c.at.0));
    if let Some(c) = &r.cancel {
        for (name, value) in audit_values(&c.audit) {
            item.insert(name.to_owned(), value);
        }
    }
    item
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn publish_items_round_trip() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: (-2).into(),
            pitid: i64::MAX.into(),
        };
        let mut r = PublishRecord::new(key.clone(), PublishState::Publishing);
        r.created = Some(Timestamp(5));
        r.percentage = Some(40);
        r.bytes_total = Some(1 << 40);
        r.message = Some("Publishing".into());
        let r = r
            .cancelled(
                &CancelStamp::new(
                    "req-1".into(),
                    Timestamp(9),
                    CancelAudit {
                        source: crate::domain::CancelSource::Sqs,
                        cancelled_by: AuditText::parse("AIDAEXAMPLE").unwrap(),
                        reason: Some(AuditText::parse("budget exceeded").unwrap()),
                        requested_by: Some(AuditText::parse("watchdog").unwrap()),
                        origin: Some(AuditText::parse("account 123456789012 source acme").unwrap()),
                    },
                ),
                &AttemptToken::from_bytes([7; 16]),
            )
            .unwrap();
        let item = record_to_item(&r, PendingShards::DEFAULT);
        assert_eq!(
            item[attr::PUBLISH_KEY].as_s().unwrap(),
            "1/-2/9223372036854775807"
        );
        assert_eq!(record_from_item(&key, &item).unwrap(), r);
    }

    #[test]
    fn legacy_and_hand_written_items_read_with_the_documented_defaults() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        };
        let base = || {
            let mut item = record_to_item(
                &PublishRecord::new(key.clone(), PublishState::Queued),
                PendingShards::DEFAULT,
            );
            item.insert(attr::STATE.into(), AttributeValue::S("cancelled".into()));
            item
        };
        // Cancelled before the audit existed.
        let mut legacy = base();
        legacy.insert(
            attr::CANCEL_REQUEST_ID.into(),
            AttributeValue::S("old-1".into()),
        );
        legacy.insert(attr::CANCELLED_AT.into(), AttributeValue::N("50".into()));
        legacy.insert(
            attr::STOP_PENDING.into(),
            AttributeValue::S("pending".into()),
        );
        let r = record_from_item(&key, &legacy).unwrap();
        let stamp = r.cancel.unwrap();
        assert_eq!(
            (stamp.request_id.as_str(), stamp.at),
            ("old-1", Timestamp(50))
        );
        assert_eq!(stamp.audit, CancelAudit::http(&key.uid));
        assert!(r.stop_pending);

        // Values no version of ours writes.
        let mut odd = base();
        for (name, value) in [
            (
                attr::CANCEL_REQUEST_ID,
                AttributeValue::S("\u{ffff} not an id".into()),
            ),
            (attr::CANCEL_SOURCE, AttributeValue::S("console".into())),
            (attr::CANCELLED_BY, AttributeValue::S("a\u{0}b".into())),
            (attr::CANCEL_REASON, AttributeValue::S("\u{fffe}".into())),
            (attr::PERCENTAGE, AttributeValue::S("forty".into())),
            (attr::LAST_MODIFIED, AttributeValue::N("77".into())),
            (attr::MESSAGE, AttributeValue::N("1".into())),
        ] {
            odd.insert(name.into(), value);
        }
        let r = record_from_item(&key, &odd).unwrap();
        let stamp = r.cancel.unwrap();
        assert!(stamp.request_id.as_str().starts_with("sha256:"));
        assert_eq!(
            stamp.at,
            Timestamp(77),
            "cancelledAt falls back to lastModified"
        );
        assert_eq!(stamp.audit, CancelAudit::http(&key.uid));
        assert_eq!((r.percentage, r.message), (None, None));

        // Cancelled with no stamp at all: none, unless a stop is pending,
        // which then goes with an id derived from the key.
        assert_eq!(record_from_item(&key, &base()).unwrap().cancel, None);
        let mut bare = base();
        bare.insert(
            attr::STOP_PENDING.into(),
            AttributeValue::S("pending".into()),
        );
        let stamp = record_from_item(&key, &bare).unwrap().cancel.unwrap();
        assert!(stamp.request_id.as_str().starts_with("sha256:"));
        assert_eq!(
            stamp.request_id,
            record_from_item(&key, &bare)
                .unwrap()
                .cancel
                .unwrap()
                .request_id
        );
    }

    /// Issue 24 (6): what was written reads back the same: a derived
    /// request id is not hashed again (its re-sent stop would carry
    /// another id than the record), the attempt and the claim survive.
    #[test]
    fn ids_and_claims_survive_the_round_trip() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        };
        let attempt = AttemptToken::from_bytes([3; 16]);
        let stamp = CancelStamp::new(
            RequestId::from_external("an EventBridge id with spaces"),
            Timestamp(9),
            CancelAudit::http(&key.uid),
        );
        assert!(stamp.request_id.as_str().starts_with("sha256:"));
        let r = PublishRecord::new(key.clone(), PublishState::Queued)
            .cancelled(&stamp, &attempt)
            .unwrap();
        let back = record_from_item(&key, &record_to_item(&r, PendingShards::DEFAULT)).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.cancel.unwrap().request_id, stamp.request_id);
        assert_eq!(back.stop_claim, Some(Claim::by(&attempt, Timestamp(9))));
    }

    /// Issue 24 (6): the key is the primary key's, whatever the copies in
    /// `aid`/`itid`/`pitid` say; a `publishKey` no key spells is an error.
    #[test]
    fn the_key_is_read_from_the_primary_key() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: (-2).into(),
            pitid: 3.into(),
        };
        let mut item = record_to_item(
            &PublishRecord::new(key.clone(), PublishState::Queued),
            PendingShards::DEFAULT,
        );
        item.insert(attr::AID.into(), AttributeValue::N("999".into()));
        item.remove(attr::PITID);
        assert_eq!(key_from_item(&item).unwrap(), key);
        for bad in ["01/-2/3", "1/2", "1/2/3/4", "1/+2/3", "a/b/c", ""] {
            item.insert(attr::PUBLISH_KEY.into(), AttributeValue::S(bad.into()));
            assert!(key_from_item(&item).is_err(), "{bad:?}");
        }
    }

    /// A pending mark counts on a cancelled record only.
    #[test]
    fn pending_means_cancelled_with_the_mark() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        };
        let mut item = record_to_item(
            &PublishRecord::new(key.clone(), PublishState::Publishing),
            PendingShards::DEFAULT,
        );
        item.insert(
            attr::STOP_PENDING.into(),
            AttributeValue::S("pending".into()),
        );
        assert!(!record_from_item(&key, &item).unwrap().stop_pending);
        item.insert(attr::STATE.into(), AttributeValue::S("cancelled".into()));
        assert!(record_from_item(&key, &item).unwrap().stop_pending);
    }

    #[test]
    fn corrupt_publish_items_are_errors() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        };
        let mut item = record_to_item(
            &PublishRecord::new(key.clone(), PublishState::Queued),
            PendingShards::DEFAULT,
        );
        item.insert(attr::STATE.into(), AttributeValue::S("paused".into()));
        assert!(record_from_item(&key, &item).is_err());
        item.remove(attr::STATE);
        assert!(record_from_item(&key, &item).is_err());
    }

    #[test]
    fn user_items_round_trip_and_fail_closed() {
        let login = Login::parse("bob").unwrap();
        let user = User {
            login: login.clone(),
            password_hash: Some("$argon2id$x".into()),
            active: true,
            entitlements: vec!["image_publish".into()],
            api_keys: vec![ApiKey {
                public_key: "PUB".into(),
                sealed_secret: "v1:xyz".into(),
            }],
        };
        assert_eq!(user_from_item(&login, &user_to_item(&user)).unwrap(), user);
        let mut item = user_to_item(&user);
        item.remove(attr::ACTIVE);
        assert!(!user_from_item(&login, &item).unwrap().active);
    }
}
