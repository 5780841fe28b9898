//! The publish worker's side of the cancel race, as a worker must write it
//! (docs/data.md, "Publishes table"): a publish finishes only from `publishing`,
//! with one conditional write, so a cancel and a completion racing on one
//! record end in exactly one of the two. Not the service's code: workers
//! are another system; the tests play one.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use publish_cancel::adapters::dynamodb::{attr, publish_item_key};
use publish_cancel::domain::{PublishKey, PublishState, Timestamp};

#[derive(Clone)]
pub struct Worker {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl Worker {
    /// Moves `publishing` to `outcome` (`published` or `failed`); `false`
    /// when the condition failed (e.g. the publish was cancelled first).
    pub async fn finish(&self, key: &PublishKey, outcome: PublishState) -> bool {
        assert!(PublishState::Publishing.can_become(outcome), "{outcome}");
        let state = |s: PublishState| AttributeValue::S(s.as_str().to_owned());
        let result = self
            .dynamo
            .update_item()
            .table_name(&self.table)
            .set_key(Some(publish_item_key(key)))
            .update_expression("SET #state = :outcome, #lastModified = :now")
            .condition_expression("#state = :publishing")
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#lastModified", attr::LAST_MODIFIED)
            .expression_attribute_values(":outcome", state(outcome))
            .expression_attribute_values(":publishing", state(PublishState::Publishing))
            .expression_attribute_values(":now", AttributeValue::N(Timestamp::now().0.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => true,
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                false
            }
            Err(e) => panic!("the worker's write failed: {e:?}"),
        }
    }
}
