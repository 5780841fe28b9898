//! DynamoDB adapters for the users and publishes tables: `items` maps
//! items to domain values, `users` and `publishes` implement the ports.

pub mod admin;
mod endpoint;
pub mod items;
pub mod provision;
mod publishes;
mod users;

pub use endpoint::client;
pub use items::{
    attr, describe_item_key, key_from_item, publish_item_key, publish_sort_key, record_from_item,
    record_to_item, user_from_item, user_to_item, PENDING_STOPS_INDEX,
};
pub use publishes::DynamoPublishes;
pub use users::DynamoUsers;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};

/// A conditional `UpdateItem`'s result: `true` written, `false` its
/// condition did not hold (nothing written), or the error (`context`).
pub fn applied(
    result: Result<UpdateItemOutput, SdkError<UpdateItemError>>,
    context: &'static str,
) -> Result<bool, crate::ports::BackendError> {
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
            Ok(false)
        }
        Err(e) => Err(crate::adapters::sdk_error(context, e)),
    }
}
