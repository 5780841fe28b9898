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

/// How long a send attempt holds its claim on a pending stop: longer than
/// any attempt can run (an HTTP request answers within 10 s, a Lambda
/// invocation ends at 15 s), so while one is in flight nobody else sends
/// the same stop, and a claim whose holder died frees itself.
pub const STOP_CLAIM_LEASE: i64 = 30;

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
    /// The record is cancelled, and SQS refused its stop for good (even
    /// without the audit's texts): parked as undeliverable and alarmed.
    #[error("publish cancelled but its stop message is refused by the queue")]
    StopUndeliverable(#[source] BackendError),
    /// The stored record cannot be read (a state we do not know): nothing
    /// was written. Not the caller's fault, and no retry cures it.
    #[error("the publish record cannot be read")]
    Unreadable(#[source] BackendError),
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

/// What a cancel came to, named once: the logs' and metrics' `outcome`
/// (`as_str`) and the automation answer's (`answer_name`) are these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Cancelled,
    AlreadyCancelled,
    Finished,
    NotFound,
    Unauthenticated,
    Forbidden,
    Unavailable,
    StopNotSent,
    StopUndeliverable,
    UnreadableRecord,
    /// The invocation's deadline came first (automation batches only).
    DeadlineReached,
}

impl Outcome {
    pub fn of(result: &Result<Cancelled, CancelError>) -> Outcome {
        match result {
            Ok(done) => Outcome::of_done(done),
            Err(e) => Outcome::of_error(e),
        }
    }

    pub fn of_done(done: &Cancelled) -> Outcome {
        if done.changed {
            Outcome::Cancelled
        } else {
            Outcome::AlreadyCancelled
        }
    }

    pub fn of_error(error: &CancelError) -> Outcome {
        match error {
            CancelError::Unauthenticated => Outcome::Unauthenticated,
            CancelError::MissingEntitlement | CancelError::NotOwner => Outcome::Forbidden,
            CancelError::NotFound => Outcome::NotFound,
            CancelError::Finished(_) => Outcome::Finished,
            CancelError::Backend(_) => Outcome::Unavailable,
            CancelError::StopNotSent(_) => Outcome::StopNotSent,
            CancelError::StopUndeliverable(_) => Outcome::StopUndeliverable,
            CancelError::Unreadable(_) => Outcome::UnreadableRecord,
        }
    }

    /// The name in logs and metrics (a small, fixed set).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Cancelled => "cancelled",
            Outcome::AlreadyCancelled => "already_cancelled",
            Outcome::Finished => "finished",
            Outcome::NotFound => "not_found",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::Unavailable => "unavailable",
            Outcome::StopNotSent => "stop_not_sent",
            Outcome::StopUndeliverable => "stop_undeliverable",
            Outcome::UnreadableRecord => "unreadable_record",
            Outcome::DeadlineReached => "deadline_reached",
        }
    }

    /// The name in an automation answer, for the outcomes that are
    /// answers rather than errors; `None` for the others.
    pub fn answer_name(self) -> Option<&'static str> {
        match self {
            Outcome::Cancelled => Some("cancelled"),
            Outcome::AlreadyCancelled => Some("alreadyCancelled"),
            Outcome::Finished => Some("finished"),
            Outcome::NotFound => Some("notFound"),
            _ => None,
        }
    }
}

/// A cancel asked for over HTTP: the key, the caller's credentials, and the
/// request's id and time (stamped into the record with the caller's login).
#[derive(Debug)]
pub struct CancelRequest {
    pub key: PublishKey,
    pub credentials: Credentials,
    pub request_id: crate::domain::RequestId,
    pub at: Timestamp,
}

/// Cancels a publish by its key: the one conditional write, then the stop
/// message, then clearing its pending mark; and re-sends a pending stop
/// (repeats, the reconciler). Whoever calls it has decided the caller may:
/// a UForge user's cancel (`UserCancel`) after authenticating, the
/// automation function on its IAM authority.
#[derive(Debug)]
pub struct Canceller<P, Q> {
    pub publishes: P,
    pub queue: Q,
}

impl<P: Publishes, Q: StopQueue> Canceller<P, Q> {
    pub async fn run(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
    ) -> Result<Cancelled, CancelError> {
        let outcome = self.publishes.cancel(key, stamp).await.map_err(|e| {
            if e.is_permanent() {
                CancelError::Unreadable(e)
            } else {
                CancelError::Backend(e)
            }
        })?;
        let (mut record, changed) = match outcome {
            CancelOutcome::Cancelled(r) => (r, true),
            // Our own write, whose answer was lost and whose SDK retry then
            // found the record cancelled: the transition, and the claim it
            // took at our own instant, are ours.
            CancelOutcome::AlreadyCancelled(r) if is_own_write(&r, stamp) => (r, true),
            CancelOutcome::AlreadyCancelled(r) => (r, false),
            CancelOutcome::Finished(r) => return Err(CancelError::Finished(r.state)),
            CancelOutcome::NotFound => return Err(CancelError::NotFound),
        };
        // The transition's own write claimed the stop. A repeat sends it
        // only while it is still pending and no other attempt is in flight:
        // a client retrying after a failed send still delivers a lost stop,
        // and a flood of repeats sends nothing more.
        if changed {
            self.deliver_stop(&mut record).await?;
        } else if record.stop_pending {
            self.claim_and_deliver(&mut record, stamp.at).await?;
        }
        Ok(Cancelled { record, changed })
    }

    /// A pending stop sent by whoever is not the transition (a repeat, a
    /// redelivery, the reconciler): claimed first, then delivered as every
    /// stop is. `false` when another attempt holds the claim (that one
    /// delivers it, or a later one once its lease is stale).
    pub async fn claim_and_deliver(
        &self,
        record: &mut PublishRecord,
        now: Timestamp,
    ) -> Result<bool, CancelError> {
        let claimed = self
            .publishes
            .claim_stop(&record.key, now, stale_claims(now))
            .await
            .map_err(CancelError::StopNotSent)?;
        if claimed {
            self.deliver_stop(record).await?;
        }
        Ok(claimed)
    }

    /// Sends the stop of `record`, a cancelled record whose pending stop
    /// the caller has claimed (`Publishes::claim_stop`, or the cancel's own
    /// write), and records how it went: the one way a stop is sent, by a
    /// cancel, a repeat or the reconciler.
    ///
    /// - sent: the pending mark is cleared;
    /// - refused for its contents: sent again without the audit's texts
    ///   (a worker must be told whatever the audit holds); refused again,
    ///   the record is parked as undeliverable (`StopUndeliverable`);
    /// - any other failure: the claim is given up and the stop stays
    ///   pending, for the next repeat or reconciler run (`StopNotSent`).
    pub async fn deliver_stop(&self, record: &mut PublishRecord) -> Result<(), CancelError> {
        let Some(stamp) = &record.cancel else {
            return Err(CancelError::Unreadable(BackendError::msg(
                "a pending stop without its cancel stamp",
            )));
        };
        let full = StopMessage::new(&record.key, stamp);
        let mut sent = self.queue.send(&full).await;
        if let Err(e) = &sent {
            if e.is_permanent() {
                tracing::warn!(publish = %record.key, error = %crate::ErrorChain(e),
                    "stop refused for its contents; sending it without the audit texts");
                sent = self.queue.send(&full.without_audit()).await;
            }
        }
        match sent {
            Ok(()) => {
                // If this write fails, the reconciler re-sends the stop
                // later: a duplicate workers ignore. Not worth failing for.
                match self.publishes.stop_sent(&record.key).await {
                    Ok(()) => record.stop_pending = false,
                    Err(e) => {
                        tracing::warn!(error = %crate::ErrorChain(&e), "stop sent but still marked pending")
                    }
                }
                record.stop_claimed_at = None;
                Ok(())
            }
            Err(e) if e.is_permanent() => {
                let reason = crate::ErrorChain(&e).to_string();
                tracing::error!(publish = %record.key, error = %reason, "stop undeliverable: parked");
                if let Err(mark) = self
                    .publishes
                    .stop_undeliverable(&record.key, &reason)
                    .await
                {
                    // Still pending then: the reconciler meets it again.
                    tracing::warn!(error = %crate::ErrorChain(&mark), "could not park the stop");
                } else {
                    record.stop_pending = false;
                    record.stop_undeliverable = Some(reason);
                }
                Err(CancelError::StopUndeliverable(e))
            }
            Err(e) => {
                if let Err(release) = self.publishes.release_stop(&record.key).await {
                    tracing::warn!(error = %crate::ErrorChain(&release), "claim kept until it expires");
                }
                Err(CancelError::StopNotSent(e))
            }
        }
    }
}

/// `record` was cancelled by this very stamp's write (its id, and its
/// claim taken at its instant, still pending).
fn is_own_write(record: &PublishRecord, stamp: &CancelStamp) -> bool {
    record.stop_pending
        && record.stop_claimed_at == Some(stamp.at)
        && record.cancel.as_ref().map(|c| &c.request_id) == Some(&stamp.request_id)
}

/// Claims that began before this are abandoned (`STOP_CLAIM_LEASE`).
fn stale_claims(now: Timestamp) -> Timestamp {
    Timestamp(now.0.saturating_sub(STOP_CLAIM_LEASE))
}

/// A UForge user's cancel (the HTTP use case): who may cancel this key
/// (credentials, the `image_publish` entitlement, ownership of `{uid}`),
/// then `Canceller`.
#[derive(Debug)]
pub struct UserCancel<U, P, Q> {
    pub users: U,
    pub auth: Authenticator,
    pub cancel: Canceller<P, Q>,
}

impl<U: Users, P: Publishes, Q: StopQueue> UserCancel<U, P, Q> {
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

        async fn claim_stop(
            &self,
            key: &PublishKey,
            now: Timestamp,
            stale_before: Timestamp,
        ) -> Result<bool, BackendError> {
            self.inner.claim_stop(key, now, stale_before).await
        }

        async fn release_stop(&self, key: &PublishKey) -> Result<(), BackendError> {
            self.inner.release_stop(key).await
        }

        async fn stop_sent(&self, key: &PublishKey) -> Result<(), BackendError> {
            self.inner.stop_sent(key).await
        }

        async fn stop_undeliverable(
            &self,
            key: &PublishKey,
            why: &str,
        ) -> Result<(), BackendError> {
            self.inner.stop_undeliverable(key, why).await
        }

        async fn pending_stops(
            &self,
            cutoff: Timestamp,
            after: Option<&crate::ports::Cursor>,
            limit: usize,
        ) -> Result<crate::ports::PendingPage, BackendError> {
            self.inner.pending_stops(cutoff, after, limit).await
        }
    }

    fn use_case() -> UserCancel<MemoryUsers, Counting, MemoryQueue> {
        let sealer = Sealer::new(&[3; 32]);
        let seed = Seed::parse(BUNDLED).unwrap();
        let users = seed.users(&sealer).unwrap().into_iter().collect();
        let publishes = seed.publishes().unwrap().into_iter().collect();
        UserCancel {
            users,
            auth: Authenticator::new(Some(crate::auth::FixedKeks::shared(sealer))),
            cancel: Canceller {
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
        assert_eq!(
            uc.cancel.queue.sent().len(),
            1,
            "a repeat does not re-send a stop known to be sent"
        );
    }

    #[tokio::test]
    async fn repeats_while_pending_send_once_per_claim() {
        let uc = use_case();
        uc.cancel.queue.fail(true);
        let first = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 4)))
            .await;
        assert!(matches!(first, Err(CancelError::StopNotSent(_))));
        uc.cancel.queue.fail(false);
        // Another attempt is in flight (a claim taken just now, not ours).
        let key = request("alice", "x", "alice", (1, 2, 4)).key;
        let publishes = &uc.cancel.publishes.inner;
        assert!(publishes
            .claim_stop(&key, Timestamp(100), Timestamp(0))
            .await
            .unwrap());
        let mut repeat = request("alice", "alice-password", "alice", (1, 2, 4));
        repeat.request_id = "repeat".into();
        let busy = uc.run(repeat).await.unwrap();
        assert!(busy.record.stop_pending);
        assert!(
            uc.cancel.queue.sent().is_empty(),
            "the claim holder sends, not us"
        );
        // Once that claim is stale, a repeat takes over and delivers.
        let mut late = request("alice", "alice-password", "alice", (1, 2, 4));
        late.at = Timestamp(100 + STOP_CLAIM_LEASE + 1);
        let done = uc.run(late).await.unwrap();
        assert!(!done.record.stop_pending);
        assert_eq!(uc.cancel.queue.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_stop_goes_without_its_audit_then_is_parked() {
        let uc = use_case();
        // Refuses any message carrying the audit's texts: the bare one goes.
        uc.cancel.queue.refuse(|m| !m.audit_omitted);
        let done = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 3)))
            .await
            .unwrap();
        assert!(!done.record.stop_pending);
        let sent = uc.cancel.queue.sent();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].audit_omitted && sent[0].cancelled_by.is_empty());
        assert_eq!(sent[0].request_id, "req");

        // Refuses everything: parked, not pending, never retried in a loop.
        uc.cancel.queue.refuse(|_| true);
        let err = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 4)))
            .await
            .unwrap_err();
        assert!(matches!(err, CancelError::StopUndeliverable(_)), "{err:?}");
        let key = request("alice", "x", "alice", (1, 2, 4)).key;
        let parked = uc.cancel.publishes.inner.get(&key).unwrap();
        assert!(!parked.stop_pending);
        assert!(parked.stop_undeliverable.is_some());
        let repeat = uc
            .run(request("alice", "alice-password", "alice", (1, 2, 4)))
            .await
            .unwrap();
        assert!(!repeat.changed);
        assert_eq!(uc.cancel.queue.sent().len(), 1, "nothing more was sent");
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
