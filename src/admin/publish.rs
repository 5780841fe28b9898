//! `uforge-admin publish put`: an operator's write of a publish record,
//! which must never undo a cancel behind the service's back. A cancel is
//! the service's to make (it stamps the record and tells the workers); a
//! cancelled record is replaced only with `--force`, which first re-sends
//! the stop its workers may not have had.

use crate::domain::{PublishRecord, PublishState};
use crate::ports::{AdminError, AdminStore, Replacing, StopMessage, StopQueue};

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReport {
    /// The state of the record it replaced, if any.
    pub replaced: Option<PublishState>,
    /// The request id of the stop it re-sent before replacing a cancelled
    /// record whose stop was pending or parked.
    pub resent_stop: Option<String>,
}

/// Writes `record` (a new one, or over the stored one as read, never over
/// a concurrent change). Refused: a record in state `cancelled` (only a
/// cancel makes one: stamped, its stop sent) and, without `force`, any
/// replacement of a cancelled record. With `force`, a pending or parked
/// stop is sent to `queue` first (the replacement would drop its mark), and
/// the put is refused if it cannot be.
pub async fn put_publish<S: AdminStore, Q: StopQueue>(
    store: &S,
    queue: Option<&Q>,
    record: &PublishRecord,
    force: bool,
) -> Result<PutReport, AdminError> {
    if record.state == PublishState::Cancelled || record.cancel.is_some() || record.stop_pending {
        return Err(AdminError::Invalid(
            "--state cancelled: a cancel is the service's to make (it stamps the record and \
             tells the workers to stop); cancel over HTTP or with the automation function"
                .into(),
        ));
    }
    let old = store.publish(&record.key).await?;
    let mut report = PutReport {
        replaced: old.as_ref().map(|o| o.state),
        resent_stop: None,
    };
    let Some(old) = old else {
        store.put_publish(record, Replacing::Nothing).await?;
        return Ok(report);
    };
    let cancelled = old.state == PublishState::Cancelled
        || old.cancel.is_some()
        || old.stop_pending
        || old.stop_claim.is_some()
        || old.stop_undeliverable.is_some();
    if cancelled && !force {
        return Err(AdminError::Invalid(format!(
            "publish {} is cancelled{}: replacing it would undo a cancel its workers were told \
             of; --force replaces it, after re-sending its stop if that is still pending",
            old.key,
            stop_status(&old)
        )));
    }
    if old.stop_pending || old.stop_undeliverable.is_some() {
        let stamp = old.cancel.as_ref().ok_or_else(|| {
            AdminError::Invalid(format!(
                "publish {}: a pending stop without its stamp",
                old.key
            ))
        })?;
        let queue = queue.ok_or_else(|| {
            AdminError::Invalid(format!(
                "publish {} has a stop its workers may not have had: set STOP_QUEUE_URL so that \
                 --force can send it before replacing the record",
                old.key
            ))
        })?;
        let stop = StopMessage::new(&old.key, stamp);
        let sent = match queue.send(&stop).await {
            Err(e) if e.is_permanent() => queue.send(&stop.without_audit()).await,
            other => other,
        };
        sent.map_err(|e| {
            AdminError::Invalid(format!(
                "publish {}: its stop could not be sent ({}); nothing was replaced",
                old.key,
                crate::ErrorChain(&e)
            ))
        })?;
        report.resent_stop = Some(stamp.request_id.to_string());
    }
    store.put_publish(record, Replacing::Read(&old)).await?;
    Ok(report)
}

fn stop_status(record: &PublishRecord) -> &'static str {
    if record.stop_pending || record.stop_claim.is_some() {
        " and its stop is pending"
    } else if record.stop_undeliverable.is_some() {
        " and its stop is parked as undeliverable"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryQueue;
    use crate::adapters::seed_file::SeedFileAdmin;
    use crate::domain::{AttemptToken, CancelAudit, CancelStamp, Login, PublishKey, Timestamp};

    fn key(pitid: i64) -> PublishKey {
        PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: pitid.into(),
        }
    }

    #[tokio::test]
    async fn cancels_are_never_written_or_undone_by_hand() {
        let dir = std::env::temp_dir().join(format!("uforge-put-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SeedFileAdmin::new(dir.join("seed.json"));
        let queue = MemoryQueue::default();
        let running = PublishRecord::new(key(1), PublishState::Publishing);
        put_publish(&store, Some(&queue), &running, false)
            .await
            .unwrap();
        // Replacing a running record is an ordinary put.
        let mut later = running.clone();
        later.percentage = Some(50);
        let report = put_publish(&store, Some(&queue), &later, false)
            .await
            .unwrap();
        assert_eq!(report.replaced, Some(PublishState::Publishing));
        // A cancelled record is not something a put makes.
        let cancelled = PublishRecord::new(key(2), PublishState::Cancelled);
        let err = put_publish(&store, Some(&queue), &cancelled, true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--state cancelled"), "{err}");
        let stamped = running
            .cancelled(
                &CancelStamp::new(
                    "r".into(),
                    Timestamp(5),
                    CancelAudit::http(&running.key.uid),
                ),
                &AttemptToken::from_bytes([1; 16]),
            )
            .unwrap();
        let mut sneaky = stamped.clone();
        sneaky.state = PublishState::Publishing;
        assert!(put_publish(&store, Some(&queue), &sneaky, true)
            .await
            .is_err());
        assert!(queue.sent().is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
