//! The reconciler: stop messages are never lost.
//!
//! A cancel marks its stop pending in the same conditional write that
//! cancels the record, and clears the mark after the send succeeds. If the
//! function dies in between (timeout, crash, SQS down past the retries), the
//! mark stays; this job, run on a schedule, re-sends the stop for every mark
//! older than a grace period and clears it.

use std::time::Duration;

use crate::domain::Timestamp;
use crate::ports::{BackendError, Publishes, StopMessage, StopQueue};

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Pending stops older than the grace period.
    pub found: usize,
    /// Re-sent and cleared.
    pub resent: usize,
    /// Still pending after this run (send or clear failed); retried next run.
    pub failed: usize,
}

/// Re-sends the stops of cancels made before `now - grace` that are still
/// pending, at most `limit` of them per run.
pub async fn reconcile(
    publishes: &impl Publishes,
    queue: &impl StopQueue,
    now: Timestamp,
    grace: Duration,
    limit: usize,
) -> Result<ReconcileReport, BackendError> {
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let cutoff = Timestamp(now.0.saturating_sub(grace));
    let pending = publishes.pending_stops(cutoff, limit).await?;
    let mut report = ReconcileReport {
        found: pending.len(),
        ..ReconcileReport::default()
    };
    for record in pending {
        let Some(stamp) = &record.cancel else {
            // A pending mark without its cancel stamp cannot be re-sent as
            // the same message; count it so the alarm on failures fires.
            report.failed += 1;
            continue;
        };
        let sent = queue.send(&StopMessage::new(&record.key, stamp)).await;
        let cleared = match sent {
            Ok(()) => publishes.stop_sent(&record.key).await,
            Err(e) => Err(e),
        };
        match cleared {
            Ok(()) => report.resent += 1,
            Err(e) => {
                tracing::warn!(publish = %record.key, error = %crate::ErrorChain(&e), "stop still pending");
                report.failed += 1;
            }
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

    #[tokio::test]
    async fn resends_only_old_pending_stops() {
        let publishes = MemoryPublishes::default();
        for pitid in 1..=3 {
            publishes.put(PublishRecord::new(key(pitid), PublishState::Publishing));
        }
        let stamp = |id: &str, at| CancelStamp {
            request_id: id.into(),
            at: Timestamp(at),
            audit: crate::domain::CancelAudit::http(&key(1).uid),
        };
        publishes.cancel(&key(1), &stamp("old", 100)).await.unwrap();
        publishes
            .cancel(&key(2), &stamp("recent", 195))
            .await
            .unwrap();
        publishes
            .cancel(&key(3), &stamp("sent", 100))
            .await
            .unwrap();
        publishes.stop_sent(&key(3)).await.unwrap();
        let queue = MemoryQueue::default();

        let report = reconcile(
            &publishes,
            &queue,
            Timestamp(200),
            Duration::from_secs(60),
            10,
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            ReconcileReport {
                found: 1,
                resent: 1,
                failed: 0
            }
        );
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].pitid, sent[0].request_id.as_str()), (1, "old"));
        assert!(!publishes.get(&key(1)).unwrap().stop_pending);
        assert!(publishes.get(&key(2)).unwrap().stop_pending);

        // A failing queue leaves the mark for the next run.
        queue.fail(true);
        let report = reconcile(
            &publishes,
            &queue,
            Timestamp(400),
            Duration::from_secs(60),
            10,
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            ReconcileReport {
                found: 1,
                resent: 0,
                failed: 1
            }
        );
        assert!(publishes.get(&key(2)).unwrap().stop_pending);
    }
}
