//! The use case: cancel a running publish.
//!
//! authenticate → entitlement → caller owns `{uid}` → one conditional write
//! → stop message. Nothing touches the stores before the caller is proven to
//! be `{uid}` with `image_publish`.

use crate::auth::{AuthError, AuthTrace, Authenticator, Credentials};
use crate::domain::{
    CancelAudit, CancelStamp, PublishKey, PublishRecord, PublishState, Timestamp, User,
    IMAGE_PUBLISH,
};
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

/// A cancel asked for over HTTP: the key, the caller's credentials, and the
/// request's id and time (stamped into the record with the caller's login).
#[derive(Debug)]
pub struct CancelRequest {
    pub key: PublishKey,
    pub credentials: Credentials,
    pub request_id: String,
    pub at: Timestamp,
}

/// Cancel this key: the one conditional write, then the stop message, then
/// clearing its pending mark. Whoever calls it has decided the caller may:
/// the HTTP path (`CancelPublish`) after authenticating, the automation
/// function on its IAM authority.
#[derive(Debug)]
pub struct CancelKey<P, Q> {
    pub publishes: P,
    pub queue: Q,
}

impl<P: Publishes, Q: StopQueue> CancelKey<P, Q> {
    pub async fn run(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
    ) -> Result<Cancelled, CancelError> {
        let outcome = self
            .publishes
            .cancel(key, stamp)
            .await
            .map_err(CancelError::Backend)?;
        let (record, changed) = match outcome {
            CancelOutcome::Cancelled(r) => (r, true),
            CancelOutcome::AlreadyCancelled(r) => (r, false),
            CancelOutcome::Finished(r) => return Err(CancelError::Finished(r.state)),
            CancelOutcome::NotFound => return Err(CancelError::NotFound),
        };
        // Re-sent on repeats too, with the original stamp and audit: a
        // client retrying after a failed send is how a lost stop gets
        // delivered.
        let stamp = record.cancel.as_ref().unwrap_or(stamp);
        self.queue
            .send(&StopMessage::new(&record.key, stamp))
            .await
            .map_err(CancelError::StopNotSent)?;
        let mut record = record;
        if record.stop_pending {
            // If this write fails, the reconciler re-sends the stop later: a
            // duplicate workers ignore. Not worth failing the request for.
            match self.publishes.stop_sent(&record.key).await {
                Ok(()) => record.stop_pending = false,
                Err(e) => {
                    tracing::warn!(error = %crate::ErrorChain(&e), "stop sent but still marked pending")
                }
            }
        }
        Ok(Cancelled { record, changed })
    }
}

/// The HTTP use case: who may cancel this key (credentials, the
/// `image_publish` entitlement, ownership of `{uid}`), then `CancelKey`.
#[derive(Debug)]
pub struct CancelPublish<U, P, Q> {
    pub users: U,
    pub auth: Authenticator,
    pub cancel: CancelKey<P, Q>,
}

impl<U: Users, P: Publishes, Q: StopQueue> CancelPublish<U, P, Q> {
    pub async fn run(&self, req: CancelRequest) -> Result<Cancelled, CancelError> {
        self.run_traced(req).await.0
    }

    /// `run`, also saying how the caller was authenticated (for metrics).
    pub async fn run_traced(
        &self,
        req: CancelRequest,
    ) -> (Result<Cancelled, CancelError>, AuthTrace) {
        let (user, trace) = self
            .auth
            .authenticate(&self.users, req.credentials, &req.key.uid)
            .await;
        let result = match user {
            Ok(user) => {
                let stamp = CancelStamp {
                    request_id: req.request_id,
                    at: req.at,
                    audit: CancelAudit::http(&user.login),
                };
                self.authorised(&user, &req.key, &stamp).await
            }
            Err(e) => Err(e.into()),
        };
        (result, trace)
    }

    /// Who may cancel this key: an `image_publish` holder who is `{uid}`.
    async fn authorised(
        &self,
        user: &User,
        key: &PublishKey,
        stamp: &CancelStamp,
    ) -> Result<Cancelled, CancelError> {
        if !user.has_entitlement(IMAGE_PUBLISH) {
            return Err(CancelError::MissingEntitlement);
        }
        if user.login != key.uid {
            return Err(CancelError::NotOwner);
        }
        self.cancel.run(key, stamp).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
    use crate::auth::{BasicCredentials, Sealer};
    use crate::domain::Login;
    use crate::seed::{Seed, BUNDLED};

    /// Counts calls, to prove what was (not) looked up.
    #[derive(Default)]
    struct Counting {
        inner: MemoryPublishes,
        calls: AtomicUsize,
    }

    impl Publishes for Counting {
        async fn cancel(
            &self,
            key: &PublishKey,
            stamp: &CancelStamp,
        ) -> Result<CancelOutcome, BackendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.cancel(key, stamp).await
        }

        async fn stop_sent(&self, key: &PublishKey) -> Result<(), BackendError> {
            self.inner.stop_sent(key).await
        }

        async fn pending_stops(
            &self,
            cutoff: crate::domain::Timestamp,
            limit: usize,
        ) -> Result<Vec<PublishRecord>, BackendError> {
            self.inner.pending_stops(cutoff, limit).await
        }
    }

    fn use_case() -> CancelPublish<MemoryUsers, Counting, MemoryQueue> {
        let sealer = Sealer::new(&[3; 32]);
        let (users, publishes) = Seed::parse(BUNDLED).unwrap().into_memory(&sealer).unwrap();
        CancelPublish {
            users,
            auth: Authenticator::new(Some(crate::auth::FixedKeks::shared(sealer))),
            cancel: CancelKey {
                publishes: Counting {
                    inner: publishes,
                    calls: AtomicUsize::new(0),
                },
                queue: MemoryQueue::default(),
            },
        }
    }

    fn request(caller: &str, password: &str, uid: &str, ids: (i64, i64, i64)) -> CancelRequest {
        CancelRequest {
            key: PublishKey {
                uid: Login::parse(uid).unwrap(),
                aid: ids.0.into(),
                itid: ids.1.into(),
                pitid: ids.2.into(),
            },
            credentials: Credentials::Basic(BasicCredentials {
                login: Login::parse(caller).unwrap(),
                password: password.into(),
            }),
            request_id: "req".into(),
            at: Timestamp(100),
        }
    }

    #[tokio::test]
    async fn nothing_is_looked_up_before_the_caller_is_proven_to_own_uid() {
        let uc = use_case();
        let cases = [
            (
                request("alice", "bad", "alice", (1, 2, 3)),
                "Unauthenticated",
            ),
            (
                request("carol", "carol-password", "carol", (5, 6, 7)),
                "MissingEntitlement",
            ),
            (
                request("bob", "bob-password", "alice", (1, 2, 3)),
                "NotOwner",
            ),
            (
                request("bob", "bob-password", "alice", (1, 2, 999)),
                "NotOwner",
            ),
        ];
        for (req, want) in cases {
            let err = uc.run(req).await.unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{err:?}");
        }
        assert_eq!(uc.cancel.publishes.calls.load(Ordering::SeqCst), 0);
        assert!(uc.cancel.queue.sent().is_empty());
    }

    #[tokio::test]
    async fn cancel_then_repeat() {
        let uc = use_case();
        let done = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 3)))
            .await
            .unwrap();
        assert!(done.changed);
        assert_eq!(done.record.state, PublishState::Cancelled);
        let again = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 3)))
            .await
            .unwrap();
        assert!(!again.changed);
        assert_eq!(again.record, done.record);
        assert_eq!(uc.cancel.queue.sent().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_send_is_retryable() {
        let uc = use_case();
        uc.cancel.queue.fail(true);
        let err = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 4)))
            .await
            .unwrap_err();
        assert!(matches!(err, CancelError::StopNotSent(_)), "{err:?}");
        uc.cancel.queue.fail(false);
        let ok = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 4)))
            .await
            .unwrap();
        assert!(!ok.changed);
        let sent = uc.cancel.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].pitid, 4);
    }

    #[tokio::test]
    async fn finished_and_missing_publishes() {
        let uc = use_case();
        for (ids, want) in [
            ((1, 2, 5), "Finished(Published)"),
            ((1, 2, 6), "Finished(Failed)"),
            ((1, 2, 99), "NotFound"),
        ] {
            let err = uc
                .run(request("alice", "alice-password", "alice", ids))
                .await
                .unwrap_err();
            assert_eq!(format!("{err:?}"), want);
        }
        assert!(uc.cancel.queue.sent().is_empty());
    }
}
