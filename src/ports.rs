//! The ports: the three things the cancel use case needs from the outside
//! world. Each has a DynamoDB/SQS adapter and an in-memory one
//! (`crate::adapters`), and the use case sees only these traits.

use std::future::Future;

use crate::domain::{CancelStamp, Login, PublishKey, PublishRecord, Timestamp, User};

/// A failure of a backing store or queue, kept with its source chain for the
/// logs. Clients only ever learn "temporarily unavailable".
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct BackendError {
    context: &'static str,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    pub fn new(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BackendError {
            context,
            source: Some(source.into()),
        }
    }

    pub fn msg(context: &'static str) -> Self {
        BackendError {
            context,
            source: None,
        }
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

/// The publish records.
pub trait Publishes: Send + Sync {
    /// Atomically moves a running publish to `cancelled`, stamping it and
    /// marking its stop message pending.
    fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
    ) -> impl Future<Output = Result<CancelOutcome, BackendError>> + Send;

    /// Records that the stop message of `key`'s cancel was sent.
    fn stop_sent(&self, key: &PublishKey) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Cancelled publishes whose stop is still pending, cancelled before
    /// `cutoff`, at most `limit` of them (for the reconciler).
    fn pending_stops(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PublishRecord>, BackendError>> + Send;
}

/// The queue the publish workers listen on.
pub trait StopQueue: Send + Sync {
    fn send(&self, stop: &StopMessage) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// The message that tells a worker to stop a publish. Its JSON form is a
/// versioned public schema (see the README); change `SCHEMA_VERSION` with it.
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
    pub request_id: String,
    /// When that cancel happened (xs:dateTime).
    pub cancelled_at: String,
    // The cancel's audit (added within version 1: readers of the first
    // form ignore unknown fields).
    /// `http`, `eventbridge`, `sqs` or `invoke`.
    #[serde(default)]
    pub cancel_source: String,
    /// The principal the service vouches for (README, "Audit").
    #[serde(default)]
    pub cancelled_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// As the sender asserted it, unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
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
            request_id: stamp.request_id.clone(),
            cancelled_at: stamp.at.to_rfc3339(),
            cancel_source: stamp.audit.source.as_str().to_owned(),
            cancelled_by: stamp.audit.cancelled_by.to_string(),
            reason: stamp.audit.reason.as_ref().map(ToString::to_string),
            requested_by: stamp.audit.requested_by.as_ref().map(ToString::to_string),
        }
    }

    /// The FIFO message group: one per publish, so stops for one publish
    /// stay ordered while different publishes proceed in parallel.
    pub fn group_id(&self) -> String {
        format!("{}/{}/{}/{}", self.uid, self.aid, self.itid, self.pitid)
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}
