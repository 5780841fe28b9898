//! The ports: what the use cases need from the outside world, one trait per
//! caller, each with its adapters in `crate::adapters` (DynamoDB or SQS,
//! and in-memory or the seed file) and one contract suite
//! (tests/suite/contract.rs) run on every adapter. `auth::KekSource` (where
//! the KEKs come from) lives with the sealing it serves, since it speaks
//! `auth::Sealer`; its contract is in the same suite.

mod admin;
mod publishes;
mod queue;
mod users;

pub use admin::{AdminError, AdminStore, Replacing, UserSummary};
pub use publishes::{
    CancelFound, CancelWrites, Cursor, PendingPage, PendingStops, PublishReader, Unreadable,
    MAX_UNDELIVERABLE_REASON, NOT_CANCELLED,
};
pub use queue::{StopMessage, StopQueue, MAX_BATCH};
pub use users::Users;

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
    /// The service answered the last attempt with a refusal (throttled,
    /// invalid): that attempt wrote nothing. Otherwise (no answer, a 5xx)
    /// the write may have been made.
    refused: bool,
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
            refused: false,
        }
    }

    pub fn msg(context: &'static str) -> Self {
        BackendError {
            context,
            source: None,
            permanent: false,
            refused: false,
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

    /// The same error, marked as an answer that refused the last attempt.
    pub fn refused(mut self) -> Self {
        self.refused = true;
        self
    }

    /// The last attempt was answered with a refusal: it wrote nothing.
    pub fn was_refused(&self) -> bool {
        self.refused
    }
}
