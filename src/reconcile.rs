//! The reconciler: stop messages are never lost.
//!
//! A cancel marks its stop pending in the same conditional write that
//! cancels the record, and clears the mark after the send succeeds. If the
//! function dies in between (timeout, crash, SQS down past the retries), the
//! mark stays; this job, run on a schedule, re-sends the stop for every mark
//! older than a grace period and clears it.

use std::time::{Duration, Instant};

use crate::cancel::{new_attempt, CancelError, Canceller};
use crate::domain::Timestamp;
use crate::ports::{BackendError, CancelWrites, Cursor, PendingStops, StopQueue};

/// What one run (or one page of it) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Pending stops older than the grace period that this run read.
    pub found: usize,
    /// Re-sent (and cleared, unless the clearing write failed: then sent
    /// again after a lease, with the same id).
    pub resent: usize,
    /// Held by another attempt in flight (a cancel, a redelivery, an
    /// overlapping run): that one sends it, or the next run once its claim
    /// lapses. Not a failure.
    pub busy: usize,
    /// Still pending after this run (a send or a write failed, or the
    /// deadline came first); retried next run.
    pub failed: usize,
    /// Refused by the queue for good: parked (`stopUndeliverable`), alarmed.
    pub undeliverable: usize,
    /// Items of the index that could not be read: skipped, logged with
    /// their key, alarmed (`uforge-admin publish repair` finds them).
    pub unreadable: usize,
    /// The run reached its deadline before the end of the index; the next
    /// run starts again from the oldest.
    pub cut_short: bool,
}

impl ReconcileReport {
    fn add(&mut self, page: &ReconcileReport) {
        self.found += page.found;
        self.resent += page.resent;
        self.busy += page.busy;
        self.failed += page.failed;
        self.undeliverable += page.undeliverable;
        self.unreadable += page.unreadable;
        self.cut_short |= page.cut_short;
    }
}

/// Re-sends the stops of cancels made before `now - grace` that are still
/// pending, oldest first, reading the index `page` items at a time to its
/// end or until `until`. No record can stop the others: an unreadable item
/// is skipped, an undeliverable stop is parked, a failing one stays
/// pending, and the next page is read all the same. Every record is its
/// own attempt, claimed at `clock()` when it is taken; no call runs past
/// `until` (a record cut off there is handed back: its claim lapses
/// within a lease). `progress` is told each page's counts as soon as the
/// page is done, so that a run ended by its deadline loses none.
pub async fn reconcile<P: CancelWrites + PendingStops, Q: StopQueue>(
    cancel: &Canceller<P, Q>,
    clock: impl Fn() -> Timestamp,
    grace: Duration,
    page: usize,
    until: Instant,
    mut progress: impl FnMut(&ReconcileReport),
) -> Result<ReconcileReport, BackendError> {
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let cutoff = Timestamp(clock().0.saturating_sub(grace));
    let mut report = ReconcileReport::default();
    let mut cursor: Option<Cursor> = None;
    loop {
        let mut done = ReconcileReport::default();
        let batch = if Instant::now() >= until {
            None
        } else {
            tokio::time::timeout_at(
                until.into(),
                cancel
                    .publishes
                    .pending_stops(cutoff, cursor.as_ref(), page),
            )
            .await
            .ok()
        };
        let Some(batch) = batch else {
            done.cut_short = true;
            progress(&done);
            report.add(&done);
            break;
        };
        let batch = batch?;
        for bad in &batch.unreadable {
            tracing::error!(item = %bad.item, reason = %bad.reason, "unreadable publish item skipped");
        }
        done.unreadable += batch.unreadable.len();
        done.found += batch.records.len();
        for mut record in batch.records {
            if Instant::now() >= until {
                done.cut_short = true;
                done.failed += 1;
                continue;
            }
            let attempt = new_attempt();
            let delivered = tokio::time::timeout_at(
                until.into(),
                cancel.claim_and_deliver(&mut record, &attempt, clock()),
            )
            .await;
            match delivered {
                Ok(Ok(true)) => done.resent += 1,
                Ok(Ok(false)) => done.busy += 1,
                Ok(Err(CancelError::StopUndeliverable(_))) => done.undeliverable += 1,
                Ok(Err(e)) => {
                    tracing::warn!(publish = %record.key, error = %crate::ErrorChain(&e), "stop still pending");
                    done.failed += 1;
                }
                Err(_) => {
                    tracing::warn!(publish = %record.key, "the run's deadline came first; the stop is handed back");
                    done.cut_short = true;
                    done.failed += 1;
                }
            }
        }
        progress(&done);
        report.add(&done);
        match batch.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryPublishes, ScriptedQueue};
    use crate::domain::{PublishRecord, PublishState};
    use crate::ports::BackendError;

    use crate::domain::fixtures::{alice_key as key, alice_stamp as stamp};

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn cancel_key() -> Canceller<MemoryPublishes, ScriptedQueue> {
        Canceller {
            publishes: MemoryPublishes::default(),
            queue: ScriptedQueue::default(),
        }
    }

    /// A cancel whose stop was never sent (the process died after its
    /// write): pending, and its claim long expired.
    async fn crashed(
        c: &Canceller<MemoryPublishes, ScriptedQueue>,
        pitid: i64,
        at: i64,
    ) -> crate::domain::AttemptToken {
        c.publishes
            .put(PublishRecord::new(key(pitid), PublishState::Publishing));
        let attempt = new_attempt();
        c.publishes
            .cancel(&key(pitid), &stamp(&format!("r{pitid}"), at), &attempt)
            .await
            .unwrap();
        attempt
    }

    #[tokio::test]
    async fn resends_only_old_pending_stops() {
        let c = cancel_key();
        crashed(&c, 1, 100).await;
        crashed(&c, 2, 195).await;
        let third = crashed(&c, 3, 100).await;
        assert!(c.publishes.stop_sent(&key(3), &third).await.unwrap());

        let report = reconcile(
            &c,
            || Timestamp(200),
            Duration::from_secs(60),
            10,
            later(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((report.found, report.resent, report.failed), (1, 1, 0));
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].pitid, sent[0].request_id.as_str()), (1, "r1"));
        assert!(!c.publishes.get(&key(1)).unwrap().stop_pending);
        assert!(c.publishes.get(&key(2)).unwrap().stop_pending);

        // A failing queue leaves the mark for the next run.
        c.queue.fail(true);
        let report = reconcile(
            &c,
            || Timestamp(400),
            Duration::from_secs(60),
            10,
            later(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((report.found, report.resent, report.failed), (1, 0, 1));
        assert!(c.publishes.get(&key(2)).unwrap().stop_pending);
        // ... and gives its claim up, so the next run sends at once.
        c.queue.fail(false);
        let report = reconcile(
            &c,
            || Timestamp(401),
            Duration::from_secs(60),
            10,
            later(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((report.found, report.resent), (1, 1));
    }

    #[tokio::test]
    async fn unsendable_stops_ahead_of_a_sendable_one_do_not_hide_it() {
        let c = cancel_key();
        // More unsendable records than one page, all older than the good one.
        for pitid in 1..=25 {
            crashed(&c, pitid, 100 + pitid).await;
        }
        crashed(&c, 99, 500).await;
        c.queue.refuse(|m| m.pitid != 99);
        let report = reconcile(
            &c,
            || Timestamp(1_000),
            Duration::from_secs(60),
            10,
            later(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(report.found, 26);
        assert_eq!((report.resent, report.undeliverable), (1, 25));
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].pitid, 99);
        // Parked: not pending, never tried again.
        let again = reconcile(
            &c,
            || Timestamp(2_000),
            Duration::from_secs(60),
            10,
            later(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(again, ReconcileReport::default());
        assert!(c
            .publishes
            .get(&key(1))
            .unwrap()
            .stop_undeliverable
            .is_some());
    }

    #[tokio::test]
    async fn transient_failures_ahead_do_not_hide_the_rest_either() {
        let c = cancel_key();
        for pitid in 1..=25 {
            crashed(&c, pitid, 100 + pitid).await;
        }
        crashed(&c, 99, 500).await;
        // Every older stop is held by an attempt in flight.
        for pitid in 1..=25 {
            let claim = crate::domain::Claim::by(&new_attempt(), Timestamp(990));
            assert!(c
                .publishes
                .claim_stop(&key(pitid), &claim, Timestamp(990), Timestamp(990))
                .await
                .unwrap());
        }
        let report = reconcile(
            &c,
            || Timestamp(1_000),
            Duration::from_secs(60),
            10,
            later(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(
            (report.found, report.resent, report.busy, report.failed),
            (26, 1, 25, 0),
            "held by others is contention, not failure"
        );
        assert_eq!(c.queue.sent()[0].pitid, 99);
    }

    /// Issue 24 (2): every record is claimed at the time it is taken, not
    /// at the run's start, so a claim written late in a long run is not
    /// already stale for a user's repeat.
    #[tokio::test]
    async fn each_claim_is_stamped_when_it_is_taken() {
        use crate::ports::StopMessage;
        use std::sync::atomic::{AtomicI64, Ordering};
        use std::sync::Mutex;
        /// Sees, at each send, the claim the record holds in the store.
        struct Witness(MemoryPublishes, Mutex<Vec<(i64, Option<Timestamp>)>>);
        impl StopQueue for Witness {
            async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
                let claim = self.0.get(&key(stop.pitid)).and_then(|r| r.stop_claim);
                self.1
                    .lock()
                    .unwrap()
                    .push((stop.pitid, claim.map(|c| c.at)));
                Ok(())
            }
        }
        let store = MemoryPublishes::default();
        let c = Canceller {
            publishes: store.clone(),
            queue: Witness(store.clone(), Mutex::default()),
        };
        let seed = Canceller {
            publishes: store.clone(),
            queue: ScriptedQueue::default(),
        };
        for pitid in 1..=3 {
            crashed(&seed, pitid, 100).await;
        }
        // A slow run: 40 s pass between taking one record and the next.
        let clock = AtomicI64::new(1_000);
        let report = reconcile(
            &c,
            || Timestamp(clock.fetch_add(40, Ordering::SeqCst)),
            Duration::from_secs(60),
            10,
            later(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(report.resent, 3);
        let seen = c.queue.1.lock().unwrap().clone();
        let claimed: Vec<i64> = seen.iter().map(|(_, at)| at.unwrap().0).collect();
        assert_eq!(claimed, [1_040, 1_080, 1_120], "{seen:?}");
    }

    /// Issue 24 (5): each page's counts are reported as soon as the page is
    /// done, and a run cut short by its deadline reports what it did.
    #[tokio::test]
    async fn pages_are_reported_as_they_are_done() {
        let c = cancel_key();
        for pitid in 1..=3 {
            crashed(&c, pitid, 100 + pitid).await;
        }
        c.queue.refuse(|m| m.pitid == 2);
        let mut pages = Vec::new();
        let report = reconcile(
            &c,
            || Timestamp(1_000),
            Duration::from_secs(60),
            1,
            later(),
            |page| pages.push(*page),
        )
        .await
        .unwrap();
        assert_eq!(pages.len(), 3, "{pages:?}");
        assert_eq!(
            pages.iter().map(|p| p.undeliverable).collect::<Vec<_>>(),
            [0, 1, 0]
        );
        assert_eq!(pages.iter().map(|p| p.found).sum::<usize>(), report.found);

        // Cut short before its first page: reported all the same.
        let mut cut = Vec::new();
        reconcile(
            &c,
            || Timestamp(2_000),
            Duration::from_secs(60),
            1,
            Instant::now(),
            |page| cut.push(*page),
        )
        .await
        .unwrap();
        assert!(cut.len() == 1 && cut[0].cut_short, "{cut:?}");
    }

    /// A run's report is the sum of its pages', field by field.
    #[test]
    fn a_run_adds_up_its_pages() {
        let page = |n: usize, cut_short: bool| ReconcileReport {
            found: n,
            resent: 2 * n,
            busy: 3 * n,
            failed: 4 * n,
            undeliverable: 5 * n,
            unreadable: 6 * n,
            cut_short,
        };
        let mut run = ReconcileReport::default();
        run.add(&page(1, false));
        run.add(&page(2, true));
        run.add(&page(4, false));
        assert_eq!(run, page(7, true));
    }

    #[tokio::test]
    async fn a_run_stops_at_its_deadline() {
        let c = cancel_key();
        crashed(&c, 1, 100).await;
        let report = reconcile(
            &c,
            || Timestamp(1_000),
            Duration::from_secs(60),
            10,
            Instant::now(),
            |_| {},
        )
        .await
        .unwrap();
        assert!(report.cut_short);
        assert!(c.queue.sent().is_empty());
        assert!(c.publishes.get(&key(1)).unwrap().stop_pending);
    }
}
