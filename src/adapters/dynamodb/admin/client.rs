//! The operator's store on DynamoDB: the tables, the KEKs, and the one
//! way a user is updated (conditional, so concurrent edits of one user do
//! not overwrite each other).

use std::sync::Arc;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::adapters::dynamodb::attr;
use crate::adapters::sdk_error;
use crate::auth::KekSource;
use crate::domain::{Login, PendingShards};
use crate::ports::AdminError;

pub struct DynamoAdmin {
    pub(super) client: Client,
    pub(super) users_table: String,
    pub(super) publishes_table: String,
    /// Needed only to seal API secrets (issue, import, re-seal).
    pub(super) keks: Option<Arc<dyn KekSource>>,
    /// Where pending marks go (`PENDING_SHARDS`, as the functions have it).
    pub(super) shards: PendingShards,
}

impl DynamoAdmin {
    pub fn new(
        client: Client,
        users_table: String,
        publishes_table: String,
        keks: Option<Arc<dyn KekSource>>,
    ) -> Self {
        DynamoAdmin {
            client,
            users_table,
            publishes_table,
            keks,
            shards: PendingShards::DEFAULT,
        }
    }

    /// The same, writing and repairing pending marks over `shards`.
    pub fn with_shards(mut self, shards: PendingShards) -> Self {
        self.shards = shards;
        self
    }

    /// The KEKs (read from their store on first use: each run of the CLI
    /// sees the store as it is now).
    pub(super) async fn sealer(&self) -> Result<Arc<crate::auth::Sealer>, AdminError> {
        let keks = self.keks.as_ref().ok_or_else(|| {
            AdminError::Invalid(
                "set UFORGE_API_KEY_KEK_SECRET (or UFORGE_API_KEY_KEK) to seal API secrets".into(),
            )
        })?;
        Ok(keks.sealer(None).await?)
    }

    /// One conditional update of an existing user.
    pub(super) async fn update_user(
        &self,
        login: &Login,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        condition: &str,
    ) -> Result<(), AdminError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key(attr::LOGIN, AttributeValue::S(login.to_string()))
            .update_expression(expression)
            .condition_expression(condition);
        // DynamoDB refuses names an expression does not use.
        if condition.contains("#login") {
            req = req.expression_attribute_names("#login", attr::LOGIN);
        }
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(AdminError::NoSuchUser(login.clone()))
            }
            Err(e) => Err(backend("updating the users table", e)),
        }
    }
}

pub(super) fn backend(
    context: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> AdminError {
    AdminError::Backend(sdk_error(context, e))
}
