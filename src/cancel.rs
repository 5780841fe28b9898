//! The use case: cancel a running publish.
//!
//! authenticate → entitlement → caller owns `{uid}` → one conditional write
//! → stop message. Nothing touches the stores before the caller is proven to
//! be `{uid}` with `image_publish`.

use crate::auth::{AuthError, Authenticator, Credentials};
use crate::domain::{CancelStamp, PublishKey, PublishRecord, PublishState, IMAGE_PUBLISH};
use crate::ports::{BackendError, CancelOutcome, Publishes, StopMessage, StopQueue, Users};

/// Everything that can stop a cancel. The HTTP layer maps each variant to a
/// status and a `uforgeError` in exactly one place (`api::error`).
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("authentication failed")]
    Unauthenticated,
    #[error("caller lacks the image_publish entitlement")]
    MissingEntitlement,
    #[error("caller is not the owner of the publish")]
    NotOwner,
    #[error("no such publish")]
    NotFound,
    #[error("publish is already {0}")]
    Finished(PublishState),
    #[error("backend unavailable")]
    Backend(#[source] BackendError),
    /// The record is cancelled but the worker was not told. Retryable: a
    /// repeated cancel re-sends the stop.
    #[error("publish cancelled but stop message not sent")]
    StopNotSent(#[source] BackendError),
}

impl From<AuthError> for CancelError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Denied => CancelError::Unauthenticated,
            AuthError::Backend(b) => CancelError::Backend(b),
        }
    }
}

/// A successful cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The record after the cancel.
    pub record: PublishRecord,
    /// `false` when it had been cancelled before (idempotent repeat).
    pub changed: bool,
}

#[derive(Debug)]
pub struct CancelRequest {
    pub key: PublishKey,
    pub credentials: Credentials,
    /// Stamped into the record and the stop message.
    pub stamp: CancelStamp,
}

/// The use case, generic over its three ports.
#[derive(Debug)]
pub struct CancelPublish<U, P, Q> {
    pub users: U,
    pub publishes: P,
    pub queue: Q,
    pub auth: Authenticator,
}

impl<U: Users, P: Publishes, Q: StopQueue> CancelPublish<U, P, Q> {
    pub async fn run(&self, req: CancelRequest) -> Result<Cancelled, CancelError> {
        let user = self
            .auth
            .authenticate(&self.users, req.credentials, &req.key.uid)
            .await?;
        if !user.has_entitlement(IMAGE_PUBLISH) {
            return Err(CancelError::MissingEntitlement);
        }
        if user.login != req.key.uid {
            return Err(CancelError::NotOwner);
        }
        let outcome = self
            .publishes
            .cancel(&req.key, &req.stamp)
            .await
            .map_err(CancelError::Backend)?;
        let (record, changed) = match outcome {
            CancelOutcome::Cancelled(r) => (r, true),
            CancelOutcome::AlreadyCancelled(r) => (r, false),
            CancelOutcome::Finished(r) => return Err(CancelError::Finished(r.state)),
            CancelOutcome::NotFound => return Err(CancelError::NotFound),
        };
        // Re-sent on repeats too, with the original stamp: a client retrying
        // after a failed send is how a lost stop gets delivered.
        let stamp = record.cancel.as_ref().unwrap_or(&req.stamp);
        self.queue
            .send(&StopMessage::new(&record.key, stamp))
            .await
            .map_err(CancelError::StopNotSent)?;
        Ok(Cancelled { record, changed })
    }
}
