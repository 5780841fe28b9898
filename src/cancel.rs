//! The delivery protocol of a cancel: the one conditional write, the stop
//! message, the claims that let exactly one attempt send it
//! (docs/developing.md, "Stop delivery"). Whoever calls `Canceller` has
//! decided the caller may: the HTTP cancel route after the access gate
//! (`crate::access`), the automation function on its IAM authority, the
//! reconciler for stops already decided.

use crate::domain::{
    AttemptToken, CancelStamp, Claim, PublishKey, PublishRecord, PublishState, Timestamp,
};
use crate::outcome::Outcome;
use crate::ports::{BackendError, CancelFound, CancelWrites, StopMessage, StopQueue};

/// How long a send attempt holds its claim on a pending stop: longer than
/// any attempt can run (an HTTP request answers within 10 s, a Lambda
/// invocation ends at 15 s), so while one is in flight nobody else sends
/// the same stop, and a claim whose holder died frees itself.
pub const STOP_CLAIM_LEASE: i64 = 30;

/// Everything that can stop a cancel of a key. The HTTP layer maps each
/// variant to a status and a `uforgeError` in one place (`api::error`),
/// the automation function to its error types.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
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

impl CancelError {
    pub fn outcome(&self) -> Outcome {
        match self {
            CancelError::NotFound => Outcome::NotFound,
            CancelError::Finished(_) => Outcome::Finished,
            CancelError::Backend(_) => Outcome::Unavailable,
            CancelError::StopNotSent(_) => Outcome::StopNotSent,
            CancelError::StopUndeliverable(_) => Outcome::StopUndeliverable,
            CancelError::Unreadable(_) => Outcome::UnreadableRecord,
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

impl Cancelled {
    pub fn outcome(&self) -> Outcome {
        if self.changed {
            Outcome::Cancelled
        } else {
            Outcome::AlreadyCancelled
        }
    }
}

/// The outcome of a cancel, whichever way it went.
pub fn outcome_of(result: &Result<Cancelled, CancelError>) -> Outcome {
    match result {
        Ok(done) => done.outcome(),
        Err(e) => e.outcome(),
    }
}

/// Cancels a publish by its key: the one conditional write, then the stop
/// message, then clearing its pending mark; and re-sends a pending stop
/// (repeats, the reconciler).
///
/// Each call is one attempt with its own `AttemptToken` (docs/developing.md,
/// "Stop delivery"): the transition and every claim carry it, so exactly
/// one attempt answers `changed` for a transition, and a stop is sent only
/// by the attempt holding its claim.
#[derive(Debug)]
pub struct Canceller<P, Q> {
    pub publishes: P,
    pub queue: Q,
}

impl<P: CancelWrites, Q: StopQueue> Canceller<P, Q> {
    pub async fn run(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
    ) -> Result<Cancelled, CancelError> {
        let attempt = new_attempt();
        let outcome = match self.publishes.cancel(key, stamp, &attempt).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_permanent() => return Err(CancelError::Unreadable(e)),
            Err(e) => {
                // The write may have committed with every answer lost: it
                // would then hold this attempt's claim, and the caller's
                // retry would wait out its lease (the reconciler, minutes
                // later) instead of sending. Give it back, fenced: only a
                // claim this attempt holds is released. Not after a
                // refusal (throttled): no more writes to a table that is
                // shedding them; an earlier attempt of that call that did
                // commit has its claim lapse within a lease.
                if !e.was_refused() {
                    let _ = self.publishes.release_stop(key, &attempt).await;
                }
                return Err(CancelError::Backend(e));
            }
        };
        let (mut record, changed) = match outcome {
            CancelFound::Cancelled(r) => (r, true),
            // Our own write, whose answer was lost and whose SDK retry then
            // found the record cancelled: the transition is ours.
            CancelFound::AlreadyCancelled(r) if r.cancel_attempt.as_ref() == Some(&attempt) => {
                (r, true)
            }
            CancelFound::AlreadyCancelled(r) => (r, false),
            CancelFound::Finished(r) => return Err(CancelError::Finished(r.state)),
            CancelFound::NotFound => return Err(CancelError::NotFound),
        };
        // The transition's write claimed the stop for this attempt. Anyone
        // else sends it only while it is still pending and after winning
        // its claim: a client retrying after a failed send still delivers a
        // lost stop, and a flood of repeats or redeliveries sends nothing.
        if record.stop_pending {
            let ours = record
                .stop_claim
                .as_ref()
                .is_some_and(|c| c.is_held_by(&attempt));
            if ours {
                self.deliver_stop(&mut record, &attempt).await?;
            } else {
                self.claim_and_deliver(&mut record, &attempt, stamp.at)
                    .await?;
            }
        }
        Ok(Cancelled { record, changed })
    }

    /// A pending stop sent by an attempt that is not the transition's (a
    /// repeat, a redelivery, the reconciler): claimed at `now` first, then
    /// delivered as every stop is. `false` when another attempt holds the
    /// claim (that one delivers it, or a later one once its lease lapses).
    pub async fn claim_and_deliver(
        &self,
        record: &mut PublishRecord,
        attempt: &AttemptToken,
        now: Timestamp,
    ) -> Result<bool, CancelError> {
        let claimed = self.claim(record, attempt, now).await?;
        if claimed {
            self.deliver_stop(record, attempt).await?;
        }
        Ok(claimed)
    }

    /// Takes the claim on `record`'s pending stop for `attempt`, stamped
    /// `now`: `true` when taken (then only `attempt` sends it, through
    /// `deliver_stop` or `settle`), `false` when another attempt holds it.
    pub async fn claim(
        &self,
        record: &mut PublishRecord,
        attempt: &AttemptToken,
        now: Timestamp,
    ) -> Result<bool, CancelError> {
        let claim = Claim::by(attempt, now);
        let cancelled_at = record.cancel.as_ref().map_or(now, |s| s.at);
        let claimed = self
            .publishes
            .claim_stop(&record.key, &claim, stale_claims(now), cancelled_at)
            .await;
        match claimed {
            Ok(Some(now_stored)) => {
                // The stop goes out as the record is now, not as the
                // caller's copy had it.
                *record = now_stored;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                // The claim may have been written all the same: give it
                // back, so that nobody waits out its lease.
                let _ = self.publishes.release_stop(&record.key, attempt).await;
                Err(CancelError::StopNotSent(e))
            }
        }
    }

    /// Sends the stop of `record`, a cancelled record whose pending stop
    /// `attempt` has claimed (`claim`, or the cancel's own write), and
    /// records how it went: the one way a stop is sent alone, by a
    /// cancel, a repeat or the reconciler (which sends in batches and
    /// hands each entry's result to `settle`).
    pub async fn deliver_stop(
        &self,
        record: &mut PublishRecord,
        attempt: &AttemptToken,
    ) -> Result<(), CancelError> {
        let full = self.stop_of(record, attempt)?;
        let sent = self.queue.send(&full).await;
        self.settle(record, attempt, &full, sent).await
    }

    /// The stop message of a record whose claim `attempt` holds.
    pub fn stop_of(
        &self,
        record: &PublishRecord,
        attempt: &AttemptToken,
    ) -> Result<StopMessage, CancelError> {
        match &record.cancel {
            Some(stamp) => Ok(StopMessage::new(&record.key, stamp).sent_by(attempt)),
            None => Err(CancelError::Unreadable(BackendError::msg(
                "a pending stop without its cancel stamp",
            ))),
        }
    }

    /// Records how the send of `full` (`record`'s stop, claimed by
    /// `attempt`) went. Every record of the outcome is conditioned on
    /// `attempt` still holding the claim.
    ///
    /// - sent: the pending mark is cleared;
    /// - refused for its contents: sent again without the audit's texts
    ///   (a worker must be told whatever the audit holds); refused again,
    ///   the record is parked as undeliverable (`StopUndeliverable`);
    /// - any other failure: the claim is given up and the stop stays
    ///   pending, for the next repeat or reconciler run (`StopNotSent`).
    pub async fn settle(
        &self,
        record: &mut PublishRecord,
        attempt: &AttemptToken,
        full: &StopMessage,
        mut sent: Result<(), BackendError>,
    ) -> Result<(), CancelError> {
        if let Err(e) = &sent {
            if e.is_permanent() {
                tracing::warn!(publish = %record.key, error = %crate::ErrorChain(e),
                    "stop refused for its contents; sending it without the audit texts");
                sent = self.queue.send(&full.without_audit()).await;
            }
        }
        match sent {
            Ok(()) => {
                // Not cleared: after a lease the reconciler sends it again,
                // a duplicate with the same id that workers ignore.
                match self.publishes.stop_sent(&record.key, attempt).await {
                    Ok(true) => {
                        record.stop_pending = false;
                        record.stop_claim = None;
                    }
                    // Should never happen (a claim outlives any attempt):
                    // a second stop may follow, so it is an error.
                    Ok(false) => tracing::error!(publish = %record.key, %attempt,
                        "stop sent after its claim had lapsed to another attempt"),
                    Err(e) => tracing::warn!(publish = %record.key, %attempt,
                        error = %crate::ErrorChain(&e), "stop sent, not marked sent"),
                }
                Ok(())
            }
            Err(e) if e.is_permanent() => {
                let reason = crate::ErrorChain(&e).to_string();
                tracing::error!(publish = %record.key, error = %reason, "stop undeliverable: parked");
                match self
                    .publishes
                    .stop_undeliverable(&record.key, attempt, &reason)
                    .await
                {
                    Ok(true) => {
                        record.stop_pending = false;
                        record.stop_claim = None;
                        record.stop_undeliverable = Some(reason);
                    }
                    // Still pending then: the reconciler meets it again.
                    Ok(false) => tracing::warn!(publish = %record.key,
                        "could not park the stop: the claim had lapsed to another attempt"),
                    Err(mark) => tracing::warn!(publish = %record.key,
                        error = %crate::ErrorChain(&mark), "could not park the stop"),
                }
                Err(CancelError::StopUndeliverable(e))
            }
            Err(e) => {
                match self.publishes.release_stop(&record.key, attempt).await {
                    Ok(_) => record.stop_claim = None,
                    Err(release) => tracing::warn!(publish = %record.key,
                        error = %crate::ErrorChain(&release), "claim kept until its lease lapses"),
                }
                Err(CancelError::StopNotSent(e))
            }
        }
    }
}

/// A new attempt's token: 128 bits from the OS. Should the OS refuse
/// (never seen on Linux), the clock, the process and a counter still make
/// it unique among the attempts that could race it.
pub fn new_attempt() -> AttemptToken {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[12..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    AttemptToken::from_bytes(bytes)
}

/// Claims that began before this are lapsed (`STOP_CLAIM_LEASE`).
fn stale_claims(now: Timestamp) -> Timestamp {
    Timestamp(now.0.saturating_sub(STOP_CLAIM_LEASE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryPublishes, ScriptedQueue};
    use crate::domain::CancelAudit;
    use crate::seed::{Seed, BUNDLED};

    /// The bundled seed's publishes, an empty queue.
    fn canceller() -> Canceller<MemoryPublishes, ScriptedQueue> {
        let publishes = Seed::parse(BUNDLED)
            .unwrap()
            .publishes()
            .unwrap()
            .into_iter()
            .collect();
        Canceller {
            publishes,
            queue: ScriptedQueue::default(),
        }
    }

    use crate::domain::fixtures::{alice_key as key, alice_stamp as stamp};

    #[tokio::test]
    async fn cancel_then_repeat() {
        let c = canceller();
        let done = c.run(&key(3), &stamp("req", 100)).await.unwrap();
        assert!(done.changed);
        assert_eq!(done.outcome(), Outcome::Cancelled);
        assert_eq!(done.record.state, PublishState::Cancelled);
        let again = c.run(&key(3), &stamp("again", 101)).await.unwrap();
        assert!(!again.changed);
        assert_eq!(again.outcome(), Outcome::AlreadyCancelled);
        assert_eq!(again.record, done.record);
        assert_eq!(
            c.queue.sent().len(),
            1,
            "a repeat does not re-send a stop known to be sent"
        );
    }

    #[tokio::test]
    async fn repeats_while_pending_send_once_per_claim() {
        let c = canceller();
        c.queue.fail(true);
        let first = c.run(&key(4), &stamp("req", 100)).await;
        assert!(matches!(first, Err(CancelError::StopNotSent(_))));
        c.queue.fail(false);
        // Another attempt is in flight (a claim taken just now, not ours).
        assert!(c
            .publishes
            .claim_stop(
                &key(4),
                &Claim::by(&new_attempt(), Timestamp(100)),
                Timestamp(0),
                Timestamp(100)
            )
            .await
            .unwrap()
            .is_some());
        let busy = c.run(&key(4), &stamp("repeat", 100)).await.unwrap();
        assert!(busy.record.stop_pending);
        assert!(c.queue.sent().is_empty(), "the claim holder sends, not us");
        // Once that claim is stale, a repeat takes over and delivers.
        let late = stamp("late", 100 + STOP_CLAIM_LEASE + 1);
        let done = c.run(&key(4), &late).await.unwrap();
        assert!(!done.record.stop_pending);
        assert_eq!(c.queue.sent().len(), 1);
        assert_eq!(c.queue.sent()[0].request_id, "req", "the cancel's own id");
    }

    #[tokio::test]
    async fn a_refused_stop_goes_without_its_audit_then_is_parked() {
        let c = canceller();
        // Refuses any message carrying the audit's texts: the bare one goes.
        c.queue.refuse(|m| !m.audit_omitted);
        let done = c.run(&key(3), &stamp("req", 100)).await.unwrap();
        assert!(!done.record.stop_pending);
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].audit_omitted && sent[0].cancelled_by.is_empty());
        assert_eq!(sent[0].request_id, "req");

        // Refuses everything: parked, not pending, never retried in a loop.
        c.queue.refuse(|_| true);
        let err = c.run(&key(4), &stamp("req", 100)).await.unwrap_err();
        assert!(matches!(err, CancelError::StopUndeliverable(_)), "{err:?}");
        assert_eq!(err.outcome(), Outcome::StopUndeliverable);
        let parked = c.publishes.get(&key(4)).unwrap();
        assert!(!parked.stop_pending);
        assert!(parked.stop_undeliverable.is_some());
        let repeat = c.run(&key(4), &stamp("again", 101)).await.unwrap();
        assert!(!repeat.changed);
        assert_eq!(c.queue.sent().len(), 1, "nothing more was sent");
    }

    /// Issue 24 (1): a redelivery of the same cancel at the same instant
    /// (same request id, same second) while the first execution is between
    /// its write and its send is not the transition: it answers
    /// `already cancelled` and sends nothing, since the first holds the
    /// claim. (Before attempt tokens, (request id, second) made it pass
    /// for the first's own write: two `cancelled` answers, two stops.)
    #[tokio::test]
    async fn a_redelivery_at_the_same_instant_is_not_the_transition() {
        let c = Canceller {
            publishes: MemoryPublishes::default(),
            queue: ScriptedQueue::default(),
        };
        let key = key(3);
        c.publishes
            .put(PublishRecord::new(key.clone(), PublishState::Publishing));
        let stamp = CancelStamp::new("evt-1".into(), Timestamp(100), CancelAudit::http(&key.uid));
        // The first execution's write, its send still to come.
        let first = new_attempt();
        let CancelFound::Cancelled(_) = c.publishes.cancel(&key, &stamp, &first).await.unwrap()
        else {
            panic!("the first cancels");
        };
        let twin = c.run(&key, &stamp).await.unwrap();
        assert!(
            !twin.changed,
            "only the first execution made the transition"
        );
        assert!(
            c.queue.sent().is_empty(),
            "the claim holder sends, not the twin"
        );
        // The first then delivers; nothing more is ever sent.
        let mut record = c.publishes.get(&key).unwrap();
        c.deliver_stop(&mut record, &first).await.unwrap();
        c.run(&key, &stamp).await.unwrap();
        assert_eq!(c.queue.sent().len(), 1);
    }

    /// The same attempt meeting its own write (the answer was lost and
    /// the SDK's retry found the record cancelled) is still the transition
    /// and still holds the claim its write took.
    #[tokio::test]
    async fn an_attempt_recognises_its_own_write_and_claim() {
        struct LostAnswer(MemoryPublishes);
        impl CancelWrites for LostAnswer {
            async fn cancel(
                &self,
                key: &PublishKey,
                stamp: &CancelStamp,
                attempt: &AttemptToken,
            ) -> Result<CancelFound, BackendError> {
                // The write commits; its answer is lost; the retry sees it.
                self.0.cancel(key, stamp, attempt).await?;
                self.0.cancel(key, stamp, attempt).await
            }
            async fn claim_stop(
                &self,
                key: &PublishKey,
                claim: &Claim,
                stale: Timestamp,
                at: Timestamp,
            ) -> Result<Option<PublishRecord>, BackendError> {
                self.0.claim_stop(key, claim, stale, at).await?;
                self.0.claim_stop(key, claim, stale, at).await
            }
            async fn release_stop(
                &self,
                k: &PublishKey,
                a: &AttemptToken,
            ) -> Result<bool, BackendError> {
                self.0.release_stop(k, a).await
            }
            async fn stop_sent(
                &self,
                k: &PublishKey,
                a: &AttemptToken,
            ) -> Result<bool, BackendError> {
                self.0.stop_sent(k, a).await
            }
            async fn stop_undeliverable(
                &self,
                k: &PublishKey,
                a: &AttemptToken,
                why: &str,
            ) -> Result<bool, BackendError> {
                self.0.stop_undeliverable(k, a, why).await
            }
        }
        let store = MemoryPublishes::default();
        let c = Canceller {
            publishes: LostAnswer(store.clone()),
            queue: ScriptedQueue::default(),
        };
        store.put(PublishRecord::new(key(3), PublishState::Queued));
        let stamp = stamp("r", 100);
        let done = c.run(&key(3), &stamp).await.unwrap();
        assert!(done.changed);
        assert!(!done.record.stop_pending);
        assert_eq!(c.queue.sent().len(), 1);

        // A claim whose answer was lost is its own attempt's at once, not
        // after a lease: the stop goes now.
        let mut pending = PublishRecord::new(key(4), PublishState::Queued);
        pending = pending.cancelled(&stamp, &new_attempt()).unwrap();
        pending.stop_claim = None;
        store.put(pending.clone());
        let claimed = c
            .claim_and_deliver(&mut pending, &new_attempt(), Timestamp(101))
            .await
            .unwrap();
        assert!(claimed);
        assert!(!store.get(&pending.key).unwrap().stop_pending);
        assert_eq!(c.queue.sent().len(), 2);
    }

    /// A store whose writes commit and whose answers are then lost, as
    /// many times as asked.
    struct Lossy {
        store: MemoryPublishes,
        lose_cancels: std::sync::atomic::AtomicUsize,
    }

    impl CancelWrites for Lossy {
        async fn cancel(
            &self,
            key: &PublishKey,
            stamp: &CancelStamp,
            attempt: &AttemptToken,
        ) -> Result<CancelFound, BackendError> {
            let found = self.store.cancel(key, stamp, attempt).await?;
            let lose = self
                .lose_cancels
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok();
            if lose {
                return Err(BackendError::msg("the answer was lost"));
            }
            Ok(found)
        }
        async fn claim_stop(
            &self,
            k: &PublishKey,
            c: &Claim,
            s: Timestamp,
            at: Timestamp,
        ) -> Result<Option<PublishRecord>, BackendError> {
            self.store.claim_stop(k, c, s, at).await
        }
        async fn release_stop(
            &self,
            k: &PublishKey,
            a: &AttemptToken,
        ) -> Result<bool, BackendError> {
            self.store.release_stop(k, a).await
        }
        async fn stop_sent(&self, k: &PublishKey, a: &AttemptToken) -> Result<bool, BackendError> {
            self.store.stop_sent(k, a).await
        }
        async fn stop_undeliverable(
            &self,
            k: &PublishKey,
            a: &AttemptToken,
            why: &str,
        ) -> Result<bool, BackendError> {
            self.store.stop_undeliverable(k, a, why).await
        }
    }

    /// Issue 33 (2): the cancel's write commits and every answer to it is
    /// lost: the attempt answers `Backend` (503). The client's retry a
    /// second later (`Retry-After: 1`) sends the stop at once, because the
    /// dead attempt gave its claim back; before, the retry met that claim,
    /// answered `alreadyCancelled` and sent nothing, leaving the stop to
    /// the reconciler minutes later.
    #[tokio::test]
    async fn a_retry_after_a_lost_cancel_write_sends_the_stop() {
        let store = MemoryPublishes::default();
        store.put(PublishRecord::new(key(3), PublishState::Publishing));
        let c = Canceller {
            publishes: Lossy {
                store: store.clone(),
                lose_cancels: 1.into(),
            },
            queue: ScriptedQueue::default(),
        };
        let lost = c.run(&key(3), &stamp("r", 100)).await.unwrap_err();
        assert!(matches!(lost, CancelError::Backend(_)), "{lost:?}");
        let stored = store.get(&key(3)).unwrap();
        assert_eq!(stored.state, PublishState::Cancelled, "the write committed");
        assert!(
            stored.stop_pending && stored.stop_claim.is_none(),
            "{stored:?}"
        );
        assert!(c.queue.sent().is_empty());
        let retry = c.run(&key(3), &stamp("r", 101)).await.unwrap();
        assert!(!retry.changed, "the transition was the first attempt's");
        assert!(!retry.record.stop_pending);
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1, "the retry sent the stop");
        assert_eq!(sent[0].request_id, "r");
    }

    /// Issue 33 (3): a stop is built from the record as its claim found
    /// it, not from the caller's copy: the record was re-cancelled (after
    /// an operator's `publish put --force`) between the copy and the claim.
    #[tokio::test]
    async fn a_claimed_stop_is_built_from_the_record_as_claimed() {
        let c = canceller();
        let first = new_attempt();
        c.publishes
            .put(PublishRecord::new(key(3), PublishState::Publishing));
        c.publishes
            .cancel(&key(3), &stamp("old", 100), &first)
            .await
            .unwrap();
        let mut copy = c.publishes.get(&key(3)).unwrap();
        // Meanwhile: replaced, and cancelled again by another request.
        c.publishes
            .put(PublishRecord::new(key(3), PublishState::Queued));
        c.publishes
            .cancel(&key(3), &stamp("new", 150), &new_attempt())
            .await
            .unwrap();
        let late = Timestamp(150 + STOP_CLAIM_LEASE + 1);
        assert!(c
            .claim_and_deliver(&mut copy, &new_attempt(), late)
            .await
            .unwrap());
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].request_id, "new",
            "the record's own cancel, not the copy's"
        );
        assert_eq!(
            copy.cancel.as_ref().map(|s| s.request_id.as_str()),
            Some("new")
        );
    }

    #[tokio::test]
    async fn a_failed_send_is_retryable() {
        let c = canceller();
        c.queue.fail(true);
        let err = c.run(&key(4), &stamp("req", 100)).await.unwrap_err();
        assert!(matches!(err, CancelError::StopNotSent(_)), "{err:?}");
        assert_eq!(outcome_of(&Err(err)), Outcome::StopNotSent);
        c.queue.fail(false);
        let ok = c.run(&key(4), &stamp("again", 101)).await.unwrap();
        assert!(!ok.changed);
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].pitid, 4);
    }

    #[tokio::test]
    async fn finished_and_missing_publishes() {
        let c = canceller();
        for (pitid, want, outcome) in [
            (5, "Finished(Published)", Outcome::Finished),
            (6, "Finished(Failed)", Outcome::Finished),
            (99, "NotFound", Outcome::NotFound),
        ] {
            let err = c.run(&key(pitid), &stamp("req", 100)).await.unwrap_err();
            assert_eq!(format!("{err:?}"), want);
            assert_eq!(err.outcome(), outcome);
        }
        assert!(c.queue.sent().is_empty());
    }
}
