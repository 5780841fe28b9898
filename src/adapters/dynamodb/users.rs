//! The users table, read by the authenticator.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::items::{attr, user_from_item};
use crate::adapters::breaker::Breaker;
use crate::adapters::sdk_error;
use crate::domain::{Login, User};
use crate::ports::{BackendError, Users};

#[derive(Debug, Clone)]
pub struct DynamoUsers {
    client: Client,
    table: String,
    /// Shared by every clone: while DynamoDB is down, reads fail fast.
    breaker: Arc<Breaker>,
}

impl DynamoUsers {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoUsers {
            client,
            table: table.into(),
            breaker: Arc::new(Breaker::new("dynamodb")),
        }
    }
}

impl Users for DynamoUsers {
    async fn get(&self, login: &Login) -> Result<Option<User>, BackendError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::LOGIN, AttributeValue::S(login.to_string()))
            // A disabled user or a revoked key must stop working at once.
            .consistent_read(true)
            .send();
        let out = self
            .breaker
            .call(read)
            .await?
            .map_err(|e| sdk_error("reading the users table", e))?;
        out.item
            .map(|item| user_from_item(login, &item))
            .transpose()
    }
}
