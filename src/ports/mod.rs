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
