//! The publishes table: the conditional cancel, clearing the pending-stop
//! mark, and the reconciler's query of the `pendingStops` index.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::items::{
    attr, audit_values, key_from_item, publish_item_key, record_from_item, state_value, Item,
    PENDING_STOPS_INDEX,
};
use crate::adapters::sdk_error;
use crate::domain::{CancelStamp, PublishKey, PublishRecord, PublishState, Timestamp};
use crate::ports::{BackendError, CancelOutcome, Publishes};

#[derive(Debug, Clone)]
pub struct DynamoPublishes {
    client: Client,
    table: String,
}

impl DynamoPublishes {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoPublishes {
            client,
            table: table.into(),
        }
    }
}

/// `#state IN (:cancellable0, :cancellable1, ...)`: the states
/// `PublishState::cancellable` lists, never a list of our own.
fn cancellable_condition() -> String {
    let names: Vec<String> = (0..PublishState::cancellable().count())
        .map(|i| format!(":cancellable{i}"))
        .collect();
    format!("#state IN ({})", names.join(", "))
}

fn cancellable_values() -> Item {
    PublishState::cancellable()
        .enumerate()
        .map(|(i, s)| (format!(":cancellable{i}"), state_value(s)))
        .collect()
}

impl Publishes for DynamoPublishes {
    async fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
    ) -> Result<CancelOutcome, BackendError> {
        // One conditional write decides everything; on failure DynamoDB hands
        // back the item as it was, so no second read is needed to tell
        // "already cancelled" from "finished" from "absent".
        // The audit goes in the same write: the first cancel's stays.
        let audit = audit_values(&stamp.audit);
        let mut update = String::from(
            "SET #state = :cancelled, #lastModified = :now, #message = :message, \
             #requestId = :requestId, #cancelledAt = :now, #pending = :pending",
        );
        for i in 0..audit.len() {
            update.push_str(&format!(", #audit{i} = :audit{i}"));
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(publish_item_key(key)))
            .update_expression(update)
            .condition_expression(cancellable_condition())
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#lastModified", attr::LAST_MODIFIED)
            .expression_attribute_names("#message", attr::MESSAGE)
            .expression_attribute_names("#requestId", attr::CANCEL_REQUEST_ID)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            // First: this sets the whole map, the calls below add to it.
            .set_expression_attribute_values(Some(cancellable_values()))
            .expression_attribute_values(":pending", AttributeValue::S(attr::PENDING.into()))
            .expression_attribute_values(":cancelled", state_value(PublishState::Cancelled))
            .expression_attribute_values(":now", AttributeValue::N(stamp.at.0.to_string()))
            .expression_attribute_values(
                ":message",
                AttributeValue::S(PublishRecord::CANCELLED_MESSAGE.into()),
            )
            .expression_attribute_values(":requestId", AttributeValue::S(stamp.request_id.clone()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (i, (name, value)) in audit.into_iter().enumerate() {
            request = request
                .expression_attribute_names(format!("#audit{i}"), name)
                .expression_attribute_values(format!(":audit{i}"), value);
        }
        let result = request.send().await;
        match result {
            Ok(out) => {
                let item = out
                    .attributes
                    .ok_or_else(|| BackendError::msg("update returned no attributes"))?;
                Ok(CancelOutcome::Cancelled(record_from_item(key, &item)?))
            }
            Err(SdkError::ServiceError(ctx)) => match ctx.into_err() {
                UpdateItemError::ConditionalCheckFailedException(e) => match e.item {
                    None => Ok(CancelOutcome::NotFound),
                    Some(item) => {
                        let record = record_from_item(key, &item)?;
                        Ok(if record.state == PublishState::Cancelled {
                            CancelOutcome::AlreadyCancelled(record)
                        } else {
                            CancelOutcome::Finished(record)
                        })
                    }
                },
                other => Err(sdk_error("cancelling in the publishes table", other)),
            },
            Err(e) => Err(sdk_error("cancelling in the publishes table", e)),
        }
    }

    async fn stop_sent(&self, key: &PublishKey) -> Result<(), BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(publish_item_key(key)))
            .update_expression("REMOVE #pending")
            // Never create an item, and a second clear is a no-op.
            .condition_expression("attribute_exists(#pending)")
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(sdk_error("clearing a pending stop", e)),
        }
    }

    async fn pending_stops(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<PublishRecord>, BackendError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PENDING_STOPS_INDEX)
            .key_condition_expression("#pending = :pending AND #cancelledAt < :cutoff")
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_values(":pending", AttributeValue::S(attr::PENDING.into()))
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.0.to_string()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("querying pending stops", e))?;
        out.items()
            .iter()
            .map(|item| record_from_item(&key_from_item(item)?, item))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cancel_condition_is_the_domain_s_list_of_cancellable_states() {
        let values = super::cancellable_values();
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
        let condition = super::cancellable_condition();
        for name in values.keys() {
            assert!(condition.contains(name.as_str()), "{condition}");
        }
        assert_eq!(condition.matches(":cancellable").count(), values.len());
    }
}
