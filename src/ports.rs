//! The ports: what the use cases need from the outside world. `Users`,
//! `Publishes` and `StopQueue` for the cancel, `AdminStore` for the
//! operator's tooling; each has its adapters in `crate::adapters` (DynamoDB
//! or SQS, and in-memory or the seed file), and one contract suite
//! (tests/suite/contract.rs) runs on every adapter. The fourth port,
//! `auth::KekSource` (where the KEKs come from), lives with the sealing it
//! serves, since it speaks `auth::Sealer`; its contract is in the same suite.

use std::future::Future;

use crate::domain::{
    AttemptToken, CancelStamp, Claim, Login, PublishKey, PublishRecord, Timestamp, User,
};

/// A failure of a backing store or queue, kept with its source chain for the
/// logs. Clients only ever learn "temporarily unavailable".
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct BackendError {
    context: &'static str,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The service refused the request itself (its contents), so sending
    /// it again can never succeed; otherwise a retry may.
    permanent: bool,
}

impl BackendError {
    pub fn new(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BackendError {
            context,
            source: Some(source.into()),
            permanent: false,
        }
    }

    pub fn msg(context: &'static str) -> Self {
        BackendError {
            context,
            source: None,
            permanent: false,
        }
    }

    /// The same error, marked as one no retry can cure.
    pub fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

/// Read access to the users of the installation.
pub trait Users: Send + Sync {
    fn get(&self, login: &Login)
        -> impl Future<Output = Result<Option<User>, BackendError>> + Send;
}

/// What a conditional cancel found, decided in one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The record was running and is now cancelled (the record after).
    Cancelled(PublishRecord),
    /// It was cancelled before: nothing was written (the record as stored).
    AlreadyCancelled(PublishRecord),
    /// It is published or failed: nothing was written (the record as stored).
    Finished(PublishRecord),
    /// No record under that whole key.
    NotFound,
}

/// The publish records: the cancel's one write, and the claim protocol of
/// its stop (docs/developing.md, "Stop delivery"). Every write here but
/// the cancel is conditioned on the stop still being pending, and those
/// that end a send attempt on the attempt still holding its claim: a late
/// or repeated write of an attempt that lost its claim changes nothing.
pub trait Publishes: Send + Sync {
    /// Atomically moves a running publish to `cancelled`, stamping it,
    /// marking its stop pending and claimed by `attempt`, and recording
    /// `attempt` as the transition's. When the record was cancelled
    /// already, `AlreadyCancelled` hands back the record as stored, whose
    /// `cancel_attempt` tells whether that was this attempt's own write.
    fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
        attempt: &AttemptToken,
    ) -> impl Future<Output = Result<CancelOutcome, BackendError>> + Send;

    /// Takes the right to send `key`'s pending stop (`claim`): `true` when
    /// the record is cancelled, its stop pending, and its claim either
    /// lapsed (taken before `stale_before`), absent, or `claim`'s own
    /// attempt's (an earlier try whose answer was lost). A pending item
    /// without `cancelledAt` gets `cancelled_at` in the same write, which
    /// brings it into the reconciler's index. `false` otherwise (sent,
    /// parked, absent, or held by another attempt), writing nothing.
    fn claim_stop(
        &self,
        key: &PublishKey,
        claim: &Claim,
        stale_before: Timestamp,
        cancelled_at: Timestamp,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// `attempt` failed and may be retried: gives its claim up (the stop
    /// stays pending), so the next repeat or reconciler run sends at once.
    /// `false`: it held no claim (nothing written).
    fn release_stop(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// `attempt` sent the stop: no longer pending. `false`: it held no
    /// claim (nothing written; its holder clears it).
    fn stop_sent(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// `attempt` found the queue refusing the stop for good (`reason`, at
    /// most `MAX_UNDELIVERABLE_REASON` characters): no longer pending, so
    /// no run retries it in a loop; an operator re-queues it. `false`: it
    /// held no claim (nothing written).
    fn stop_undeliverable(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
        reason: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Cancelled publishes whose stop is still pending, cancelled before
    /// `cutoff`, oldest first, at most `limit` from `after` on (for the
    /// reconciler, which pages through them all). Items that cannot be read
    /// (or carry a pending mark on a publish that is not cancelled) are
    /// listed apart, never an error of the page.
    fn pending_stops(
        &self,
        cutoff: Timestamp,
        after: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<PendingPage, BackendError>> + Send;
}

/// Why a pending mark on a record that is not a cancelled one with its
/// stamp is never sent: nothing safe can be said about such an item.
pub const NOT_CANCELLED: &str = "a pending stop on a publish that is not cancelled";

/// `stop_undeliverable`'s reasons are cut to this many characters.
pub const MAX_UNDELIVERABLE_REASON: usize = 512;

/// Where a page of `pending_stops` ended; opaque, each adapter its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

/// One page of pending stops.
#[derive(Debug, Default)]
pub struct PendingPage {
    pub records: Vec<PublishRecord>,
    /// Items of the page that could not be read, skipped.
    pub unreadable: Vec<Unreadable>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<Cursor>,
}

/// An item that could not be read as a publish record: its key as stored
/// (for the logs and `uforge-admin publish repair`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub item: String,
    pub reason: String,
}

/// The queue the publish workers listen on.
pub trait StopQueue: Send + Sync {
    fn send(&self, stop: &StopMessage) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// The message that tells a worker to stop a publish. Its JSON form is a
/// versioned public schema (docs/data.md); change `SCHEMA_VERSION` with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMessage {
    #[serde(rename = "type")]
    pub kind: String,
    pub schema_version: u32,
    pub uid: String,
    pub aid: i64,
    pub itid: i64,
    pub pitid: i64,
    /// The request id of the cancel that made the transition: the same on
    /// every re-send, so FIFO queues and workers can de-duplicate on it.
    /// Always 1-128 printable ASCII characters (`RequestId`).
    pub request_id: String,
    /// When that cancel happened (xs:dateTime).
    pub cancelled_at: String,
    // The cancel's audit (added within version 1: readers of the first
    // form ignore unknown fields).
    /// `http`, `eventbridge`, `sqs` or `invoke`.
    #[serde(default)]
    pub cancel_source: String,
    /// The principal the service vouches for (docs/automation.md, "Audit"); absent
    /// only when `auditOmitted`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cancelled_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// As the sender asserted it, unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// What EventBridge says of the sender (`account … source …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `true` when SQS refused the full message for its contents and this
    /// one was sent instead, without `cancelledBy`, `reason`,
    /// `requestedBy` and `origin` (the record keeps them): a worker is told to stop
    /// whatever the audit holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit_omitted: bool,
}

impl StopMessage {
    pub const KIND: &'static str = "uforge.publish.stop";
    pub const SCHEMA_VERSION: u32 = 1;

    pub fn new(key: &PublishKey, stamp: &CancelStamp) -> Self {
        StopMessage {
            kind: Self::KIND.to_owned(),
            schema_version: Self::SCHEMA_VERSION,
            uid: key.uid.to_string(),
            aid: key.aid.get(),
            itid: key.itid.get(),
            pitid: key.pitid.get(),
            request_id: stamp.request_id.to_string(),
            cancelled_at: stamp.at.to_rfc3339(),
            cancel_source: stamp.audit.source.as_str().to_owned(),
            cancelled_by: stamp.audit.cancelled_by.to_string(),
            reason: stamp.audit.reason.as_ref().map(ToString::to_string),
            requested_by: stamp.audit.requested_by.as_ref().map(ToString::to_string),
            origin: stamp.audit.origin.as_ref().map(ToString::to_string),
            audit_omitted: false,
        }
    }

    /// The same stop without the audit's free texts: only the key, the
    /// request id, the time and the source, each valid by construction.
    pub fn without_audit(&self) -> Self {
        StopMessage {
            cancelled_by: String::new(),
            reason: None,
            requested_by: None,
            origin: None,
            audit_omitted: true,
            ..self.clone()
        }
    }

    /// The FIFO message group: one per publish, so stops for one publish
    /// stay ordered while different publishes proceed in parallel. At most
    /// 127 printable ASCII characters (a login is at most 64 of
    /// `[A-Za-z0-9._@-]`, each id at most 20), as SQS requires of a group.
    pub fn group_id(&self) -> String {
        format!("{}/{}/{}/{}", self.uid, self.aid, self.itid, self.pitid)
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

// --- the operator's port (uforge-admin) ---

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
