//! Tables for an emulator or a scratch account (`uforge-admin setup`),
//! which has no template at run time: the one copy of template.yaml's
//! schema, held equal to it by the rehearsal
//! (`uforge_admin_setup_creates_the_template_s_tables`).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodb::Client;

use super::{attr, PENDING_STOPS_INDEX};
use crate::ports::AdminError;

fn backend(context: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> AdminError {
    AdminError::Backend(crate::adapters::sdk_error(context, e))
}

/// Creates the users and publishes tables with the production key schemas,
/// the publishes table's sparse `pendingStops` index and its stream (for an
/// emulator or a scratch account). template.yaml is the statement of the
/// schema: production and every emulator test build from it
/// (`tests/deploy/stack.py tables`). This is the one copy, for `uforge-admin
/// setup`, which has no template at run time, and the rehearsal holds it
/// equal to the template (`uforge_admin_setup_creates_the_template_s_tables`).
pub async fn create_tables(
    dynamo: &Client,
    users_table: &str,
    publishes_table: &str,
) -> Result<(), AdminError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| AdminError::Invalid(e.to_string()))
    };
    let def = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(|e| AdminError::Invalid(e.to_string()))
    };
    dynamo
        .create_table()
        .table_name(users_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def(attr::LOGIN, ScalarAttributeType::S)?)
        .key_schema(key(attr::LOGIN, KeyType::Hash)?)
        .send()
        .await
        .map_err(|e| backend("creating the users table", e))?;
    let pending_index = GlobalSecondaryIndex::builder()
        .index_name(PENDING_STOPS_INDEX)
        .key_schema(key(attr::STOP_PENDING, KeyType::Hash)?)
        .key_schema(key(attr::CANCELLED_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    dynamo
        .create_table()
        .table_name(publishes_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def(attr::UID, ScalarAttributeType::S)?)
        .attribute_definitions(def(attr::PUBLISH_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(def(attr::STOP_PENDING, ScalarAttributeType::S)?)
        .attribute_definitions(def(attr::CANCELLED_AT, ScalarAttributeType::N)?)
        .key_schema(key(attr::UID, KeyType::Hash)?)
        .key_schema(key(attr::PUBLISH_KEY, KeyType::Range)?)
        .global_secondary_indexes(pending_index)
        // What "Publish Cancelled" events are made from (template.yaml's
        // PublishCancelledPipe).
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(|e| AdminError::Invalid(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| backend("creating the publishes table", e))?;
    Ok(())
}
