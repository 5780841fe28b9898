//! `uforge-admin publish repair`: the publishes table scanned for items
//! older releases or hands wrote (docs/data.md), each fixed by a
//! conditional write that never overwrites.

use aws_sdk_dynamodb::types::AttributeValue;

use super::client::{backend, DynamoAdmin};
use crate::adapters::dynamodb::{applied, attr, publish_item_key, record_from_item};
use crate::domain::{PublishKey, PublishRecord, Shard, Timestamp};
use crate::ports::AdminError;

/// What `repair_publishes` found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Items read.
    pub scanned: usize,
    /// Cancelled before the audit existed: `cancelSource`/`cancelledBy`
    /// written with the defaults they read as (`http`, the record's uid).
    pub backfilled: usize,
    /// Parked stops put back to pending, for the reconciler.
    pub requeued: usize,
    /// Pending marks in no shard the reconciler reads (a value written by
    /// hand or foreign tooling, or a shard beyond a lowered
    /// `PENDING_SHARDS`): moved to their key's shard.
    pub resharded: usize,
    /// Pending stops whose `cancelledAt` is in milliseconds (foreign
    /// tooling): no cutoff of the index ever reached them; rewritten in
    /// seconds.
    pub retimed: usize,
    /// Pending stops outside the reconciler's index (no numeric
    /// `cancelledAt`, written by hand): given their stamp's time, which
    /// brings them in.
    pub indexed: usize,
    /// Items that cannot be read as publish records: their key and why.
    pub unreadable: Vec<(String, String)>,
}

impl RepairReport {
    /// Scanned, fixed (or that would be), failed (unreadable).
    pub fn counts(&self) -> crate::admin::Counts {
        crate::admin::Counts {
            scanned: self.scanned,
            fixed: self.backfilled + self.indexed + self.resharded + self.retimed + self.requeued,
            failed: self.unreadable.len(),
        }
    }
}

impl DynamoAdmin {
    /// Scans the publishes table: backfills the audit fields of items
    /// cancelled before they existed (with the defaults they already read
    /// as, each a conditional write that never overwrites), lists the items
    /// that cannot be read, and, with `requeue`, moves parked
    /// (`stopUndeliverable`) stops back to pending for the reconciler.
    /// With `dry_run`, writes nothing and reports what it would do.
    pub async fn repair_publishes(
        &self,
        dry_run: bool,
        requeue: bool,
    ) -> Result<RepairReport, AdminError> {
        self.repair_publishes_with(dry_run, requeue, &mut |_| {})
            .await
    }

    /// The same, telling `page_done` the report so far after each page.
    /// Each fix is one conditional write: stopped at any point, every item
    /// is fixed or untouched, and a second run fixes the rest.
    pub async fn repair_publishes_with(
        &self,
        dry_run: bool,
        requeue: bool,
        page_done: &mut (dyn FnMut(&RepairReport) + Send),
    ) -> Result<RepairReport, AdminError> {
        let mut report = RepairReport::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.publishes_table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| backend("scanning the publishes table", e))?;
            for item in page.items() {
                report.scanned += 1;
                let record = crate::adapters::dynamodb::key_from_item(item)
                    .and_then(|key| record_from_item(&key, item));
                let record = match record {
                    Ok(r) => r,
                    Err(e) => {
                        report.unreadable.push((
                            crate::adapters::dynamodb::describe_item_key(item),
                            crate::ErrorChain(&e).to_string(),
                        ));
                        continue;
                    }
                };
                let legacy = record.cancel.is_some()
                    && !(item.contains_key(attr::CANCEL_SOURCE)
                        && item.contains_key(attr::CANCELLED_BY));
                if legacy {
                    report.backfilled += 1;
                    if !dry_run {
                        self.backfill_audit(&record).await?;
                    }
                }
                if item.contains_key(attr::STOP_PENDING) && !record.stop_pending {
                    report.unreadable.push((
                        crate::adapters::dynamodb::describe_item_key(item),
                        crate::ports::NOT_CANCELLED.to_owned(),
                    ));
                    continue;
                }
                let at = record.cancel.as_ref().map_or(Timestamp(0), |s| s.at);
                // A time more than a day ahead cannot be seconds of a cancel
                // made: milliseconds, which no index cutoff ever reaches.
                if let Some(was @ AttributeValue::N(n)) = item.get(attr::CANCELLED_AT) {
                    let far = Timestamp::now().0.saturating_add(86_400);
                    match n.parse::<i64>() {
                        Ok(millis) if record.stop_pending && millis > far => {
                            report.retimed += 1;
                            if !dry_run {
                                let seconds = AttributeValue::N((millis / 1000).to_string());
                                self.replace_if_unchanged(
                                    &record.key,
                                    attr::CANCELLED_AT,
                                    was,
                                    seconds,
                                    "rewriting a cancel time in seconds",
                                )
                                .await?;
                            }
                        }
                        _ => {}
                    }
                }
                // A mark of another value or type is in no shard read.
                let mark = item.get(attr::STOP_PENDING);
                let read = matches!(mark, Some(AttributeValue::S(v))
                    if Shard::parse(v).is_some_and(|s| self.shards.contains(s)));
                if let (true, false, Some(was)) = (record.stop_pending, read, mark) {
                    report.resharded += 1;
                    if !dry_run {
                        let shard = AttributeValue::S(self.shards.of(&record.key).value());
                        self.replace_if_unchanged(
                            &record.key,
                            attr::STOP_PENDING,
                            was,
                            shard,
                            "moving a pending mark to its shard",
                        )
                        .await?;
                    }
                }
                let indexed = matches!(item.get(attr::CANCELLED_AT), Some(AttributeValue::N(_)));
                if record.stop_pending && !indexed {
                    report.indexed += 1;
                    if !dry_run {
                        self.index_pending(&record.key, at).await?;
                    }
                }
                if requeue && record.stop_undeliverable.is_some() {
                    report.requeued += 1;
                    if !dry_run {
                        self.requeue_stop(&record.key, at).await?;
                    }
                }
            }
            page_done(&report);
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(report),
            }
        }
    }

    async fn backfill_audit(&self, record: &PublishRecord) -> Result<(), AdminError> {
        let Some(stamp) = &record.cancel else {
            return Ok(());
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(&record.key)))
            .update_expression(
                "SET #source = if_not_exists(#source, :source), #by = if_not_exists(#by, :by)",
            )
            .condition_expression("attribute_exists(#state)")
            .expression_attribute_names("#source", attr::CANCEL_SOURCE)
            .expression_attribute_names("#by", attr::CANCELLED_BY)
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_values(
                ":source",
                AttributeValue::S(stamp.audit.source.as_str().to_owned()),
            )
            .expression_attribute_values(
                ":by",
                AttributeValue::S(stamp.audit.cancelled_by.to_string()),
            )
            .send()
            .await;
        // Not applied: deleted meanwhile, nothing to repair.
        applied(result, "backfilling a cancel's audit")
            .map(|_| ())
            .map_err(AdminError::Backend)
    }

    /// Gives a pending item without `cancelledAt` its stamp's time, so
    /// that it enters the reconciler's index.
    async fn index_pending(&self, key: &PublishKey, at: Timestamp) -> Result<(), AdminError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(key)))
            .update_expression("SET #cancelledAt = :at")
            .condition_expression(
                "attribute_exists(#pending) AND attribute_not_exists(#cancelledAt)",
            )
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_values(":at", AttributeValue::N(at.0.to_string()))
            .send()
            .await;
        applied(result, "bringing a pending stop into the index")
            .map(|_| ())
            .map_err(AdminError::Backend)
    }

    /// Sets `name` to `now` where it still holds `was` (as read); nothing
    /// if it changed since.
    async fn replace_if_unchanged(
        &self,
        key: &PublishKey,
        name: &str,
        was: &AttributeValue,
        now: AttributeValue,
        context: &'static str,
    ) -> Result<(), AdminError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(key)))
            .update_expression("SET #name = :now")
            .condition_expression("#name = :was")
            .expression_attribute_names("#name", name)
            .expression_attribute_values(":now", now)
            .expression_attribute_values(":was", was.clone())
            .send()
            .await;
        applied(result, context)
            .map(|_| ())
            .map_err(AdminError::Backend)
    }

    async fn requeue_stop(&self, key: &PublishKey, at: Timestamp) -> Result<(), AdminError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(key)))
            .update_expression(
                "SET #pending = :pending, #cancelledAt = if_not_exists(#cancelledAt, :at) \
                 REMOVE #undeliverable, #claimed, #claimedBy",
            )
            .condition_expression("attribute_exists(#undeliverable)")
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#undeliverable", attr::STOP_UNDELIVERABLE)
            .expression_attribute_names("#claimed", attr::STOP_CLAIMED_AT)
            .expression_attribute_names("#claimedBy", attr::STOP_CLAIMED_BY)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_values(":pending", AttributeValue::S(self.shards.of(key).value()))
            .expression_attribute_values(":at", AttributeValue::N(at.0.to_string()))
            .send()
            .await;
        applied(result, "re-queueing a parked stop")
            .map(|_| ())
            .map_err(AdminError::Backend)
    }
}
