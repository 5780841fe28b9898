//! The queue the publish workers listen on, and the message they get.

use std::future::Future;

use super::BackendError;
use crate::domain::{AttemptToken, CancelStamp, PublishKey};

/// The queue the publish workers listen on.
pub trait StopQueue: Send + Sync {
    fn send(&self, stop: &StopMessage) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Sends up to `MAX_BATCH` stops at once; one result per stop, in
    /// order, so that each entry's failure is handled as its own send's
    /// would be. By default, one send after the other.
    fn send_batch<'a>(
        &'a self,
        stops: &'a [StopMessage],
    ) -> impl Future<Output = Vec<Result<(), BackendError>>> + Send + 'a {
        async move {
            let mut results = Vec::with_capacity(stops.len());
            for stop in stops {
                results.push(self.send(stop).await);
            }
            results
        }
    }

    /// `false` while the queue is known to be down (its sends fail fast,
    /// `adapters::breaker`): a reconciler then claims nothing it could
    /// not send. A hint, never a promise: a send may still fail.
    fn available(&self) -> bool {
        true
    }
}

/// The most stops one `send_batch` takes (SQS's `SendMessageBatch` limit).
pub const MAX_BATCH: usize = 10;

/// The message that tells a worker to stop a publish. Its JSON form is a
/// versioned public schema (docs/data.md); change `SCHEMA_VERSION` with it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// The attempt that holds the stop's claim and sends this copy: not in
    /// the body (the schema is the workers'), but the SQS message
    /// attribute `attempt`, so that copies of one stop can be told apart
    /// by their sender (docs/data.md, "The stop message").
    #[serde(skip)]
    pub sent_by: Option<AttemptToken>,
}

/// Copies of one stop are equal whichever attempt sent them: equal when
/// their bodies are (`sent_by` is not in the body).
impl PartialEq for StopMessage {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

impl Eq for StopMessage {}

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
            sent_by: None,
        }
    }

    /// The same stop, sent by `attempt`.
    pub fn sent_by(mut self, attempt: &AttemptToken) -> Self {
        self.sent_by = Some(attempt.clone());
        self
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
