//! The publishes table: the conditional cancel, clearing the pending-stop
//! mark, and the reconciler's query of the `pendingStops` index.

use std::sync::Arc;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::items::{
    attr, audit_values, describe_item_key, key_from_item, publish_item_key, record_from_item,
    state_value, Item, PENDING_STOPS_INDEX,
};
use crate::adapters::breaker::Breaker;
use crate::adapters::sdk_error;
use crate::domain::{
    AttemptToken, CancelStamp, Claim, PendingShards, PublishKey, PublishRecord, PublishState,
    Shard, Timestamp, MAX_CLAIM_AHEAD,
};
use crate::ports::{
    BackendError, CancelFound, CancelWrites, Cursor, PendingPage, PendingStops, PublishReader,
    Unreadable, MAX_UNDELIVERABLE_REASON, NOT_CANCELLED,
};

#[derive(Debug, Clone)]
pub struct DynamoPublishes {
    client: Client,
    table: String,
    /// How the pending index's marks are spread (`PENDING_SHARDS`).
    shards: PendingShards,
    /// Shared by every clone: while DynamoDB is down, calls fail fast.
    breaker: Arc<Breaker>,
}

impl DynamoPublishes {
    /// The publishes table `table`, its marks spread over the default
    /// shard count.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoPublishes {
            client,
            table: table.into(),
            shards: PendingShards::DEFAULT,
            breaker: Arc::new(Breaker::new("dynamodb")),
        }
    }

    /// The same table behind `breaker` (tests and benches set its timing).
    pub fn with_breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = Arc::new(breaker);
        self
    }

    /// The same, its marks spread over `shards` (the deployment's setting).
    pub fn with_shards(mut self, shards: PendingShards) -> Self {
        self.shards = shards;
        self
    }
}

/// `#state IN (:cancellable0, :cancellable1, ...)` and its values: the
/// states `PublishState::cancellable` lists, never a list of our own.
/// Written once per process, not per request.
static CANCELLABLE: std::sync::LazyLock<(String, Item)> = std::sync::LazyLock::new(|| {
    let names: Vec<String> = (0..PublishState::cancellable().count())
        .map(|i| format!(":cancellable{i}"))
        .collect();
    let values = names
        .iter()
        .cloned()
        .zip(PublishState::cancellable().map(state_value));
    (
        format!("#state IN ({})", names.join(", ")),
        values.collect(),
    )
});

/// The audit fields a cancel writes only when given.
const OPTIONAL_AUDIT: [&str; 3] = [
    attr::CANCEL_REASON,
    attr::CANCEL_REQUESTED_BY,
    attr::CANCEL_ORIGIN,
];

/// `#staleN`, for each optional audit field a cancel removes.
const STALE_PLACEHOLDERS: [&str; 3] = ["#stale0", "#stale1", "#stale2"];

/// `#auditN` and `:auditN`, for each audit field a cancel may write.
const AUDIT_PLACEHOLDERS: [(&str, &str); 5] = [
    ("#audit0", ":audit0"),
    ("#audit1", ":audit1"),
    ("#audit2", ":audit2"),
    ("#audit3", ":audit3"),
    ("#audit4", ":audit4"),
];

impl CancelWrites for DynamoPublishes {
    async fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
        attempt: &AttemptToken,
    ) -> Result<CancelFound, BackendError> {
        // One conditional write decides everything; on failure DynamoDB hands
        // back the item as it was, so no second read is needed to tell
        // "already cancelled" from "finished" from "absent".
        // The audit goes in the same write: the first cancel's stays.
        let audit = audit_values(&stamp.audit);
        let mut update = String::with_capacity(256);
        update.push_str(
            "SET #state = :cancelled, #lastModified = :now, #message = :message, \
             #requestId = :requestId, #cancelledAt = :now, #pending = :pending, \
             #claimed = :now, #claimedBy = :attempt, #attempt = :attempt",
        );
        for (name, value) in AUDIT_PLACEHOLDERS.iter().take(audit.len()) {
            for part in [", ", name, " = ", value] {
                update.push_str(part);
            }
        }
        // What an earlier cancel of this record left and this one does not
        // write (a parked stop's reason, audit texts this cancel has not):
        // the record is this cancel's, as the domain's `cancelled` says.
        let stale: Vec<&str> = OPTIONAL_AUDIT
            .into_iter()
            .filter(|name| !audit.iter().any(|(written, _)| written == name))
            .collect();
        update.push_str(" REMOVE #undeliverable");
        for placeholder in STALE_PLACEHOLDERS.iter().take(stale.len()) {
            update.push_str(", ");
            update.push_str(placeholder);
        }
        let (cancellable, cancellable_values) = &*CANCELLABLE;
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(publish_item_key(key)))
            .update_expression(update)
            .condition_expression(cancellable.as_str())
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#lastModified", attr::LAST_MODIFIED)
            .expression_attribute_names("#message", attr::MESSAGE)
            .expression_attribute_names("#requestId", attr::CANCEL_REQUEST_ID)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#claimed", attr::STOP_CLAIMED_AT)
            .expression_attribute_names("#claimedBy", attr::STOP_CLAIMED_BY)
            .expression_attribute_names("#attempt", attr::CANCEL_ATTEMPT)
            // First: this sets the whole map, the calls below add to it.
            .set_expression_attribute_values(Some(cancellable_values.clone()))
            .expression_attribute_values(":pending", AttributeValue::S(self.shards.of(key).value()))
            .expression_attribute_values(":cancelled", state_value(PublishState::Cancelled))
            .expression_attribute_values(":now", AttributeValue::N(stamp.at.0.to_string()))
            .expression_attribute_values(":attempt", AttributeValue::S(attempt.as_str().into()))
            .expression_attribute_values(
                ":message",
                AttributeValue::S(PublishRecord::CANCELLED_MESSAGE.into()),
            )
            .expression_attribute_values(
                ":requestId",
                AttributeValue::S(stamp.request_id.as_str().into()),
            )
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for ((name, value), (name_at, value_at)) in audit.into_iter().zip(AUDIT_PLACEHOLDERS) {
            request = request
                .expression_attribute_names(name_at, name)
                .expression_attribute_values(value_at, value);
        }
        request = request.expression_attribute_names("#undeliverable", attr::STOP_UNDELIVERABLE);
        for (name, placeholder) in stale.into_iter().zip(STALE_PLACEHOLDERS) {
            request = request.expression_attribute_names(placeholder, name);
        }
        let result = self.breaker.call(request.send()).await?;
        match result {
            Ok(out) => {
                let item = out
                    .attributes
                    .ok_or_else(|| BackendError::msg("update returned no attributes"))?;
                Ok(CancelFound::Cancelled(unreadable_is_permanent(
                    record_from_item(key, &item),
                )?))
            }
            Err(SdkError::ServiceError(ctx)) => {
                let refusal = ctx.raw().status().as_u16() < 500;
                match ctx.into_err() {
                    UpdateItemError::ConditionalCheckFailedException(e) => match e.item {
                        None => Ok(CancelFound::NotFound),
                        Some(item) => {
                            let record = unreadable_is_permanent(record_from_item(key, &item))?;
                            Ok(if record.state == PublishState::Cancelled {
                                CancelFound::AlreadyCancelled(record)
                            } else {
                                CancelFound::Finished(record)
                            })
                        }
                    },
                    other => {
                        let e = sdk_error("cancelling in the publishes table", other);
                        // A 4xx (throttled, invalid) refused the last attempt:
                        // it wrote nothing. A 5xx may have written.
                        Err(if refusal { e.refused() } else { e })
                    }
                }
            }
            Err(e) => Err(sdk_error("cancelling in the publishes table", e)),
        }
    }

    async fn claim_stop(
        &self,
        key: &PublishKey,
        claim: &Claim,
        stale_before: Timestamp,
        cancelled_at: Timestamp,
    ) -> Result<Option<PublishRecord>, BackendError> {
        // Pending on a cancelled record, and nobody else's attempt began
        // since `stale_before` (our own, whose answer was lost, may have):
        // `Claim::yields_to`. A claim time that is no number (NULL, a
        // string, a boolean: hand edits, foreign tooling) holds nothing, nor
        // does one stamped too far ahead (a number beyond i64 included).
        let mut condition = String::from(
            "#state = :cancelled AND attribute_exists(#pending) AND \
             (attribute_not_exists(#claimed) OR NOT attribute_type(#claimed, :number) \
             OR #claimed < :stale OR #claimed > :ahead",
        );
        let mut update = String::from(
            "SET #claimed = :now, #cancelledAt = if_not_exists(#cancelledAt, :cancelledAt)",
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(publish_item_key(key)));
        match &claim.by {
            Some(by) => {
                condition.push_str(" OR #claimedBy = :attempt)");
                update.push_str(", #claimedBy = :attempt");
                request = request
                    .expression_attribute_values(":attempt", AttributeValue::S(by.to_string()));
            }
            None => {
                condition.push(')');
                update.push_str(" REMOVE #claimedBy");
            }
        }
        let result = request
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#claimed", attr::STOP_CLAIMED_AT)
            .expression_attribute_names("#claimedBy", attr::STOP_CLAIMED_BY)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_values(":cancelled", state_value(PublishState::Cancelled))
            .expression_attribute_values(":now", AttributeValue::N(claim.at.0.to_string()))
            .expression_attribute_values(":stale", AttributeValue::N(stale_before.0.to_string()))
            .expression_attribute_values(":number", AttributeValue::S("N".into()))
            .expression_attribute_values(
                ":ahead",
                AttributeValue::N(claim.at.0.saturating_add(MAX_CLAIM_AHEAD).to_string()),
            )
            .expression_attribute_values(
                ":cancelledAt",
                AttributeValue::N(cancelled_at.0.to_string()),
            )
            // The record as the claim left it: the stop is built from it.
            .return_values(ReturnValue::AllNew)
            .send();
        match self.breaker.call(result).await? {
            Ok(out) => {
                let item = out
                    .attributes
                    .ok_or_else(|| BackendError::msg("claim returned no attributes"))?;
                unreadable_is_permanent(record_from_item(key, &item)).map(Some)
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(None)
            }
            Err(e) => Err(sdk_error("claiming a pending stop", e)),
        }
    }

    async fn release_stop(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> Result<bool, BackendError> {
        self.end_attempt(
            key,
            attempt,
            "REMOVE #claimed, #claimedBy",
            None,
            "releasing a pending stop",
        )
        .await
    }

    async fn stop_sent(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> Result<bool, BackendError> {
        self.end_attempt(
            key,
            attempt,
            "REMOVE #pending, #claimed, #claimedBy",
            None,
            "clearing a pending stop",
        )
        .await
    }

    async fn stop_undeliverable(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
        reason: &str,
    ) -> Result<bool, BackendError> {
        let mut reason: String = reason.chars().take(MAX_UNDELIVERABLE_REASON).collect();
        if reason.is_empty() {
            reason.push_str("refused");
        }
        self.end_attempt(
            key,
            attempt,
            "REMOVE #pending, #claimed, #claimedBy SET #undeliverable = :why",
            Some(AttributeValue::S(reason)),
            "parking an undeliverable stop",
        )
        .await
    }
}

impl PendingStops for DynamoPublishes {
    fn shards(&self) -> Vec<Shard> {
        self.shards.all().collect()
    }

    async fn pending_stops(
        &self,
        shard: Shard,
        cutoff: Timestamp,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<PendingPage, BackendError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PENDING_STOPS_INDEX)
            .key_condition_expression("#pending = :pending AND #cancelledAt < :cutoff")
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_values(":pending", AttributeValue::S(shard.value()))
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.0.to_string()))
            .set_exclusive_start_key(after.and_then(cursor_to_key))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send();
        let out = self
            .breaker
            .call(query)
            .await?
            .map_err(|e| sdk_error("querying pending stops", e))?;
        let mut page = PendingPage {
            next: out.last_evaluated_key().and_then(key_to_cursor),
            ..PendingPage::default()
        };
        for item in out.items() {
            match key_from_item(item).and_then(|key| record_from_item(&key, item)) {
                Ok(record) if record.stop_pending => page.records.push(record),
                Ok(_) => page.unreadable.push(Unreadable {
                    item: describe_item_key(item),
                    reason: NOT_CANCELLED.to_owned(),
                }),
                Err(e) => page.unreadable.push(Unreadable {
                    item: describe_item_key(item),
                    reason: crate::ErrorChain(&e).to_string(),
                }),
            }
        }
        Ok(page)
    }
}

impl PublishReader for DynamoPublishes {
    async fn read(&self, key: &PublishKey) -> Result<Option<PublishRecord>, BackendError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(publish_item_key(key)))
            .consistent_read(true)
            .send();
        let out = self
            .breaker
            .call(read)
            .await?
            .map_err(|e| sdk_error("reading the publishes table", e))?;
        out.item
            .map(|item| unreadable_is_permanent(record_from_item(key, &item)))
            .transpose()
    }
}

impl DynamoPublishes {
    /// `update` (a `REMOVE`, perhaps a `SET` of `:why`) ending `attempt`'s
    /// send, on a record whose stop is pending and claimed by `attempt`;
    /// `false` (nothing written) for any other record, never creating one.
    async fn end_attempt(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
        update: &str,
        why: Option<AttributeValue>,
        context: &'static str,
    ) -> Result<bool, BackendError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(publish_item_key(key)))
            .update_expression(update)
            // As `MemoryPublishes::end_attempt`: a pending stop (on a
            // cancelled record) that `attempt` holds.
            .condition_expression(
                "#state = :cancelled AND attribute_exists(#pending) AND #claimedBy = :attempt",
            )
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_values(":cancelled", state_value(PublishState::Cancelled))
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#claimed", attr::STOP_CLAIMED_AT)
            .expression_attribute_names("#claimedBy", attr::STOP_CLAIMED_BY)
            .expression_attribute_values(":attempt", AttributeValue::S(attempt.to_string()));
        if let Some(why) = why {
            request = request
                .expression_attribute_names("#undeliverable", attr::STOP_UNDELIVERABLE)
                .expression_attribute_values(":why", why);
        }
        super::applied(self.breaker.call(request.send()).await?, context)
    }
}

/// An item that cannot be read will not read better on a retry.
fn unreadable_is_permanent(
    read: Result<PublishRecord, BackendError>,
) -> Result<PublishRecord, BackendError> {
    read.map_err(BackendError::permanent)
}

/// The index's `LastEvaluatedKey` (four string or number attributes) as an
/// opaque cursor, and back.
fn key_to_cursor(key: &std::collections::HashMap<String, AttributeValue>) -> Option<Cursor> {
    let fields: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .map(|(name, value)| match value {
            AttributeValue::S(s) => Some((name.clone(), serde_json::json!({ "S": s }))),
            AttributeValue::N(n) => Some((name.clone(), serde_json::json!({ "N": n }))),
            _ => None,
        })
        .collect::<Option<_>>()?;
    Some(Cursor(serde_json::Value::Object(fields).to_string()))
}

fn cursor_to_key(cursor: &Cursor) -> Option<Item> {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&cursor.0).ok()?;
    fields
        .into_iter()
        .map(|(name, value)| {
            let value = match (value.get("S"), value.get("N")) {
                (Some(serde_json::Value::String(s)), None) => AttributeValue::S(s.clone()),
                (None, Some(serde_json::Value::String(n))) => AttributeValue::N(n.clone()),
                _ => return None,
            };
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let key: Item = [
            ("uid".to_owned(), AttributeValue::S("alice".into())),
            ("cancelledAt".to_owned(), AttributeValue::N("12".into())),
        ]
        .into();
        let cursor = key_to_cursor(&key).unwrap();
        assert_eq!(cursor_to_key(&cursor), Some(key));
        assert_eq!(cursor_to_key(&Cursor("garbage".into())), None);
    }

    /// Every audit field a cancel may write has its placeholders.
    #[test]
    fn a_full_audit_has_a_placeholder_for_every_field() {
        use crate::domain::{AuditText, CancelAudit, CancelSource};
        let text = || Some(AuditText::parse("x").unwrap());
        let full = CancelAudit {
            source: CancelSource::Http,
            cancelled_by: AuditText::parse("alice").unwrap(),
            reason: text(),
            requested_by: text(),
            origin: text(),
        };
        assert_eq!(audit_values(&full).len(), AUDIT_PLACEHOLDERS.len());
    }

    #[test]
    fn the_cancel_condition_is_the_domain_s_list_of_cancellable_states() {
        let (condition, values) = &*CANCELLABLE;
        let listed: Vec<&str> = values
            .values()
            .map(|v| v.as_s().unwrap().as_str())
            .collect();
        let mut listed = listed;
        listed.sort();
        let mut domain: Vec<&str> = PublishState::cancellable()
            .map(PublishState::as_str)
            .collect();
        domain.sort();
        assert_eq!(listed, domain);
        for name in values.keys() {
            assert!(condition.contains(name.as_str()), "{condition}");
        }
        assert_eq!(condition.matches(":cancellable").count(), values.len());
    }
}
