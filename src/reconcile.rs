//! The reconciler: stop messages are never lost.
//!
//! A cancel marks its stop pending in the same conditional write that
//! cancels the record, and clears the mark after the send succeeds. If the
//! function dies in between (timeout, crash, SQS down past the retries), the
//! mark stays; this job, run on a schedule, re-sends the stop for every mark
//! older than a grace period and clears it.

use std::time::{Duration, Instant};

use crate::cancel::{CancelError, Canceller};
use crate::domain::Timestamp;
use crate::ports::{BackendError, Cursor, Publishes, StopQueue};

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Pending stops older than the grace period that this run read.
    pub found: usize,
    /// Re-sent and cleared.
    pub resent: usize,
    /// Still pending after this run (a send or a write failed, or another
    /// attempt holds the stop); retried next run.
    pub failed: usize,
    /// Refused by the queue for good: parked (`stopUndeliverable`), alarmed.
    pub undeliverable: usize,
    /// Items of the index that could not be read: skipped, logged with
    /// their key, alarmed (`uforge-admin publishes repair` finds them).
    pub unreadable: usize,
    /// The run reached its deadline before the end of the index; the next
    /// run starts again from the oldest.
    pub cut_short: bool,
}

/// Re-sends the stops of cancels made before `now - grace` that are still
/// pending, oldest first, reading the index `page` items at a time to its
/// end or until `until`. No record can stop the others: an unreadable item
/// is skipped, an undeliverable stop is parked, a failing one stays
/// pending, and the next page is read all the same.
pub async fn reconcile<P: Publishes, Q: StopQueue>(
    cancel: &Canceller<P, Q>,
    now: Timestamp,
    grace: Duration,
    page: usize,
    until: Instant,
) -> Result<ReconcileReport, BackendError> {
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let cutoff = Timestamp(now.0.saturating_sub(grace));
    let mut report = ReconcileReport::default();
    let mut cursor: Option<Cursor> = None;
    loop {
        if Instant::now() >= until {
            report.cut_short = true;
            break;
        }
        let batch = cancel
            .publishes
            .pending_stops(cutoff, cursor.as_ref(), page)
            .await?;
        for bad in &batch.unreadable {
            tracing::error!(item = %bad.item, reason = %bad.reason, "unreadable publish item skipped");
        }
        report.unreadable += batch.unreadable.len();
        report.found += batch.records.len();
        for mut record in batch.records {
            if Instant::now() >= until {
                report.cut_short = true;
                report.failed += 1;
                continue;
            }
            match cancel.claim_and_deliver(&mut record, now).await {
                Ok(true) if !record.stop_pending => report.resent += 1,
                Ok(_) => report.failed += 1,
                Err(CancelError::StopUndeliverable(_)) => report.undeliverable += 1,
                Err(e) => {
                    tracing::warn!(publish = %record.key, error = %crate::ErrorChain(&e), "stop still pending");
                    report.failed += 1;
                }
            }
        }
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
    use crate::adapters::memory::{MemoryPublishes, MemoryQueue};
    use crate::domain::{CancelStamp, Login, PublishKey, PublishRecord, PublishState};

    fn key(pitid: i64) -> PublishKey {
        PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: pitid.into(),
        }
    }

    fn stamp(id: &str, at: i64) -> CancelStamp {
        CancelStamp {
            request_id: id.into(),
            at: Timestamp(at),
            audit: crate::domain::CancelAudit::http(&key(1).uid),
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn cancel_key() -> Canceller<MemoryPublishes, MemoryQueue> {
        Canceller {
            publishes: MemoryPublishes::default(),
            queue: MemoryQueue::default(),
        }
    }

    /// A cancel whose stop was never sent (the process died after its
    /// write): pending, and its claim long expired.
    async fn crashed(c: &Canceller<MemoryPublishes, MemoryQueue>, pitid: i64, at: i64) {
        c.publishes
            .put(PublishRecord::new(key(pitid), PublishState::Publishing));
        c.publishes
            .cancel(&key(pitid), &stamp(&format!("r{pitid}"), at))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn resends_only_old_pending_stops() {
        let c = cancel_key();
        crashed(&c, 1, 100).await;
        crashed(&c, 2, 195).await;
        crashed(&c, 3, 100).await;
        c.publishes.stop_sent(&key(3)).await.unwrap();

        let report = reconcile(&c, Timestamp(200), Duration::from_secs(60), 10, later())
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
        let report = reconcile(&c, Timestamp(400), Duration::from_secs(60), 10, later())
            .await
            .unwrap();
        assert_eq!((report.found, report.resent, report.failed), (1, 0, 1));
        assert!(c.publishes.get(&key(2)).unwrap().stop_pending);
        // ... and gives its claim up, so the next run sends at once.
        c.queue.fail(false);
        let report = reconcile(&c, Timestamp(401), Duration::from_secs(60), 10, later())
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
        let report = reconcile(&c, Timestamp(1_000), Duration::from_secs(60), 10, later())
            .await
            .unwrap();
        assert_eq!(report.found, 26);
        assert_eq!((report.resent, report.undeliverable), (1, 25));
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].pitid, 99);
        // Parked: not pending, never tried again.
        let again = reconcile(&c, Timestamp(2_000), Duration::from_secs(60), 10, later())
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
            assert!(c
                .publishes
                .claim_stop(&key(pitid), Timestamp(990), Timestamp(990))
                .await
                .unwrap());
        }
        let report = reconcile(&c, Timestamp(1_000), Duration::from_secs(60), 10, later())
            .await
            .unwrap();
        assert_eq!((report.found, report.resent, report.failed), (26, 1, 25));
        assert_eq!(c.queue.sent()[0].pitid, 99);
    }

    #[tokio::test]
    async fn a_run_stops_at_its_deadline() {
        let c = cancel_key();
        crashed(&c, 1, 100).await;
        let report = reconcile(
            &c,
            Timestamp(1_000),
            Duration::from_secs(60),
            10,
            Instant::now(),
        )
        .await
        .unwrap();
        assert!(report.cut_short);
        assert!(c.queue.sent().is_empty());
        assert!(c.publishes.get(&key(1)).unwrap().stop_pending);
    }
}
