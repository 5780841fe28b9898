//! template.yaml as the tests see it, through tests/deploy/stack.py: the
//! tables the emulator tests create are the template's (one statement of
//! the schema), and the rehearsal deploys the whole stack.

use std::process::Command;
use std::sync::OnceLock;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use serde_json::Value;

const STACK_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/deploy/stack.py");

/// Runs `tests/deploy/stack.py ARGS` and parses the JSON it prints.
pub fn stack_py(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(STACK_PY)
        .args(args)
        .output()
        .expect("run python3 tests/deploy/stack.py (scripts/test installs its modules)");
    assert!(
        out.status.success(),
        "stack.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stack.py prints JSON")
}

/// The template's tables, by logical id (`UsersTable`, `PublishesTable`).
pub fn tables() -> &'static Value {
    static TABLES: OnceLock<Value> = OnceLock::new();
    TABLES.get_or_init(|| stack_py(&["tables"]))
}

/// The template's alarms as `stack.py alarms` lists them (read once: the
/// alarm tests evaluate them minute after minute).
pub fn alarms() -> &'static Value {
    static ALARMS: OnceLock<Value> = OnceLock::new();
    ALARMS.get_or_init(|| stack_py(&["alarms"]))
}

fn key_schema(v: &Value) -> Vec<KeySchemaElement> {
    v.as_array()
        .expect("KeySchema is a list")
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(k["AttributeName"].as_str().expect("name"))
                .key_type(KeyType::from(k["KeyType"].as_str().expect("type")))
                .build()
                .expect("key schema element")
        })
        .collect()
}

/// Creates the template's table `logical` (e.g. `PublishesTable`) as `name`.
pub async fn create_table(dynamo: &aws_sdk_dynamodb::Client, logical: &str, name: &str) {
    let t = &tables()[logical];
    let mut req = dynamo
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(
            t["BillingMode"].as_str().unwrap_or("PAY_PER_REQUEST"),
        ))
        .set_key_schema(Some(key_schema(&t["KeySchema"])));
    for d in t["AttributeDefinitions"].as_array().expect("definitions") {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(d["AttributeName"].as_str().expect("name"))
                .attribute_type(ScalarAttributeType::from(
                    d["AttributeType"].as_str().expect("type"),
                ))
                .build()
                .expect("attribute definition"),
        );
    }
    for i in t["GlobalSecondaryIndexes"].as_array().into_iter().flatten() {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(i["IndexName"].as_str().expect("index name"))
                .set_key_schema(Some(key_schema(&i["KeySchema"])))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            i["Projection"]["ProjectionType"]
                                .as_str()
                                .expect("projection"),
                        ))
                        .build(),
                )
                .build()
                .expect("index"),
        );
    }
    if let Some(view) = t["StreamSpecification"]["StreamViewType"].as_str() {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .expect("stream specification"),
        );
    }
    req.send().await.expect("create a table of template.yaml");
}
