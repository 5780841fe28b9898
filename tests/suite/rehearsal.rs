//! The deployment rehearsal: template.yaml, transformed by SAM and created
//! as a CloudFormation stack in moto (both values of `FifoQueue`), then the
//! compiled Lambda binaries (lambda-functions.txt) run inside what it built,
//! with exactly the environment CloudFormation resolved for them and the
//! credentials of their own roles, while moto enforces IAM.
//!
//! The binaries are the host's debug builds, or, when
//! `UFORGE_ARTEFACT_DIR` names a directory holding them (scripts/test sets
//! it to the arm64 release builds), those:
//! the artefact `sam deploy` would ship, run under qemu-user.
//!
//! What moto cannot show is said in docs/developing.md ("The deployment
//! rehearsal"): API Gateway's routing (checked on the transformed template by
//! tests/deploy/check_template.py), IAM conditions, alarms.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use common::moto::Moto;
use common::runtime_api::{Outcome, RuntimeApi};
use common::sample_events::{
    function_binary, lambda_functions, run_every_automation_event, run_every_event, LambdaProcess,
};
use common::template::stack_py;
use common::{sdk_config_as, Stack};
use publish_cancel::adapters::dynamodb::{attr, PENDING_STOPS_INDEX};
use publish_cancel::config;
use publish_cancel::domain::{CancelStamp, PublishRecord, PublishState, Timestamp};
use serde_json::Value;

const KEK_SECRET: &str = "uforge/api-key-kek";

/// A deployed stack, as `stack.py deploy` read it back.
struct Deployed {
    fifo: bool,
    d: Value,
}

impl Deployed {
    fn function(&self, logical: &str) -> &Value {
        &self.d["functions"][logical]
    }

    fn table(&self, logical: &str) -> &str {
        self.d["tables"][logical]["name"].as_str().unwrap()
    }

    fn queue_url(&self, logical: &str) -> &str {
        self.d["queues"][logical]["url"].as_str().unwrap()
    }

    fn role_name(&self, logical: &str) -> &str {
        self.d["roles"][logical]["name"].as_str().unwrap()
    }

    /// The environment Lambda would give the function: its resolved
    /// variables, the runtime's own, and its role's credentials. The one
    /// addition is AWS_ENDPOINT_URL, pointing the SDK at moto.
    fn lambda_env(&self, logical: &str, runtime: &str, endpoint: &str) -> Vec<(String, String)> {
        let f = self.function(logical);
        let creds = &f["credentials"];
        let mut env: Vec<(String, String)> = f["environment"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let s = |v: &Value| v.as_str().unwrap().to_owned();
        env.extend([
            ("AWS_LAMBDA_RUNTIME_API".into(), runtime.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), s(&f["name"])),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                f["memory_size"].to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
            (
                "AWS_LAMBDA_LOG_FORMAT".into(),
                s(&f["logging"]["LogFormat"]),
            ),
            (
                "AWS_LAMBDA_LOG_LEVEL".into(),
                s(&f["logging"]["ApplicationLogLevel"]),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), s(&creds["access_key_id"])),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                s(&creds["secret_access_key"]),
            ),
            ("AWS_SESSION_TOKEN".into(), s(&creds["session_token"])),
            ("AWS_ENDPOINT_URL".into(), endpoint.to_owned()),
        ]);
        env
    }

    /// The stack's tables and stop queue, reached with `sdk`'s credentials.
    fn stack(&self, sdk: &aws_config::SdkConfig) -> Stack {
        Stack::existing(
            sdk,
            self.table("UsersTable").to_owned(),
            self.table("PublishesTable").to_owned(),
            self.queue_url("StopQueue").to_owned(),
        )
    }

    /// An SDK configuration with the function's role credentials.
    async fn role_sdk(&self, logical: &str, endpoint: &str) -> aws_config::SdkConfig {
        let c = &self.function(logical)["credentials"];
        sdk_config_as(
            endpoint,
            c["access_key_id"].as_str().unwrap(),
            c["secret_access_key"].as_str().unwrap(),
            c["session_token"].as_str(),
        )
        .await
    }
}

fn deploy(endpoint: &str, stack: &str, fifo: bool, code: &Path) -> Deployed {
    let d = stack_py(&[
        "deploy",
        "--endpoint",
        endpoint,
        "--stack",
        stack,
        "--code",
        code.to_str().unwrap(),
        "--param",
        &format!("FifoQueue={fifo}"),
        "--param",
        &format!("ApiKeyKekSecretName={KEK_SECRET}"),
        "--param",
        "TableDeletionProtection=false",
    ]);
    Deployed { fifo, d }
}

fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(name: &str, kind: &str) -> (String, String) {
    (name.to_owned(), kind.to_owned())
}

/// What was created is what the code uses.
fn check_read_back(s: &Deployed) {
    // Tables: the keys and the index the adapters address.
    let users = &s.d["tables"]["UsersTable"];
    assert_eq!(
        key_schema(&users["key_schema"]),
        [pair(attr::LOGIN, "HASH")]
    );
    let publishes = &s.d["tables"]["PublishesTable"];
    assert_eq!(
        key_schema(&publishes["key_schema"]),
        [pair(attr::UID, "HASH"), pair(attr::PUBLISH_KEY, "RANGE")]
    );
    let indexes = publishes["indexes"].as_array().unwrap();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert_eq!(indexes[0]["name"], PENDING_STOPS_INDEX);
    assert_eq!(
        key_schema(&indexes[0]["key_schema"]),
        [
            pair(attr::STOP_PENDING, "HASH"),
            pair(attr::CANCELLED_AT, "RANGE")
        ]
    );
    // The reconciler reads whole records from the index.
    assert_eq!(indexes[0]["projection"]["ProjectionType"], "ALL");
    let types: BTreeMap<String, String> = publishes["attribute_definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["AttributeName"].as_str().unwrap().to_owned(),
                d["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // As the adapter writes them (a mistyped key would keep items out of the index).
    assert_eq!(types[attr::STOP_PENDING], "S");
    assert_eq!(types[attr::CANCELLED_AT], "N");

    // Queues: the stop queue redrives to its DLQ; FIFO as asked.
    let stop = &s.d["queues"]["StopQueue"];
    let dlq = &s.d["queues"]["StopDeadLetterQueue"];
    let redrive: Value =
        serde_json::from_str(stop["attributes"]["RedrivePolicy"].as_str().unwrap()).unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"],
        dlq["attributes"]["QueueArn"]
    );
    assert_eq!(redrive["maxReceiveCount"], 5);
    for q in [stop, dlq] {
        let is_fifo = q["attributes"]["FifoQueue"].as_str() == Some("true");
        assert_eq!(is_fifo, s.fifo, "{q}");
        assert_eq!(q["url"].as_str().unwrap().ends_with(".fifo"), s.fifo);
    }

    // Functions: exactly the variables the binaries read, every reference
    // resolved to this stack's resources.
    let cancel = &s.function("CancelFunction")["environment"];
    let expect_cancel = owned(&[
        (config::ENV_BACKEND, "aws"),
        (config::ENV_USERS_TABLE, s.table("UsersTable")),
        (config::ENV_PUBLISHES_TABLE, s.table("PublishesTable")),
        (config::ENV_STOP_QUEUE_URL, s.queue_url("StopQueue")),
        (config::ENV_BASE_PATH, "/api"),
        (config::ENV_TLS_ROOTS, "amazon"),
        (config::ENV_API_KEY_KEK_SECRET, KEK_SECRET),
        (config::ENV_PENDING_SHARDS, "16"),
    ]);
    assert_eq!(env_map(cancel), expect_cancel);
    let reconciler = &s.function("ReconcilerFunction")["environment"];
    let expect_reconciler = owned(&[
        (config::ENV_BACKEND, "aws"),
        (config::ENV_PUBLISHES_TABLE, s.table("PublishesTable")),
        (config::ENV_STOP_QUEUE_URL, s.queue_url("StopQueue")),
        ("RECONCILE_GRACE_SECONDS", "60"),
        ("RECONCILE_BATCH", "100"),
        (config::ENV_RECONCILE_IN_FLIGHT, "64"),
        (config::ENV_TLS_ROOTS, "amazon"),
        (config::ENV_PENDING_SHARDS, "16"),
    ]);
    assert_eq!(env_map(reconciler), expect_reconciler);
    // The automation function: the publishes table and the stop queue only.
    let automation = &s.function("AutomationFunction")["environment"];
    let expect_automation = owned(&[
        (config::ENV_BACKEND, "aws"),
        (config::ENV_PUBLISHES_TABLE, s.table("PublishesTable")),
        (config::ENV_STOP_QUEUE_URL, s.queue_url("StopQueue")),
        (config::ENV_TLS_ROOTS, "amazon"),
        (config::ENV_PENDING_SHARDS, "16"),
    ]);
    assert_eq!(env_map(automation), expect_automation);
    // Its command queue redrives to its DLQ; the publishes table streams
    // old and new images for the "Publish Cancelled" pipe.
    let commands = &s.d["queues"]["CommandQueue"];
    let redrive: Value =
        serde_json::from_str(commands["attributes"]["RedrivePolicy"].as_str().unwrap()).unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"],
        s.d["queues"]["CommandDeadLetterQueue"]["attributes"]["QueueArn"]
    );
    assert_eq!(
        publishes["stream"]["StreamViewType"], "NEW_AND_OLD_IMAGES",
        "{publishes}"
    );
    // Announcements have a bus of their own, with no rule of ours.
    let announcements = &s.d["buses"]["AnnouncementBus"];
    assert_eq!(s.d["outputs"]["AnnouncementBusName"], announcements["name"]);
    assert_ne!(announcements["name"], s.d["buses"]["AutomationBus"]["name"]);
    assert_eq!(
        announcements["rules"],
        serde_json::json!([]),
        "{announcements}"
    );
    // The reconciler's schedules: one a minute per group of shards, every
    // group of the four once, each invoking the reconciler.
    let reconciler_arn = s.function("ReconcilerFunction")["arn"].clone();
    let schedules = s.d["schedules"].as_array().expect("schedules");
    let mut groups: Vec<(u64, u64)> = schedules
        .iter()
        .filter(|r| r["targets"][0]["Arn"] == reconciler_arn)
        .map(|r| {
            assert_eq!(r["schedule"], "rate(1 minute)", "{r}");
            assert_eq!(r["targets"].as_array().unwrap().len(), 1, "{r}");
            let input: Value =
                serde_json::from_str(r["targets"][0]["Input"].as_str().expect("an input")).unwrap();
            (
                input["shardGroup"].as_u64().unwrap(),
                input["shardGroups"].as_u64().unwrap(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(groups, [(0, 4), (1, 4), (2, 4), (3, 4)], "{schedules:?}");

    // The requests' bus has one rule, for cancel requests only, invoking
    // the function with the rule's ARN and the whole event.
    let bus = &s.d["buses"]["AutomationBus"];
    assert_eq!(s.d["outputs"]["AutomationBusName"], bus["name"]);
    let rules = bus["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{bus}");
    assert_eq!(
        rules[0]["pattern"],
        serde_json::json!({"detail-type": ["Publish Cancel Requested"]})
    );
    // The rule and the command queue's mapping invoke the `events` alias,
    // the only thing anyone is granted on the function, and only the rule
    // is granted it; the function itself grants nobody.
    let automation = s.function("AutomationFunction");
    let alias = &automation["aliases"]["events"];
    assert_eq!(
        alias.as_str(),
        Some(format!("{}:events", automation["arn"].as_str().unwrap()).as_str()),
        "{automation}"
    );
    let targets = rules[0]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{bus}");
    assert_eq!(&targets[0]["Arn"], alias);
    assert_eq!(
        automation["grants"]["null"],
        serde_json::json!([]),
        "{automation}"
    );
    assert_eq!(
        automation["grants"]["events"],
        serde_json::json!([{"principal": {"Service": "events.amazonaws.com"}, "source_arn": rules[0]["arn"]}]),
        "{automation}"
    );
    let mappings = automation["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 1, "{automation}");
    assert_eq!(&mappings[0]["FunctionArn"], alias);
    assert_eq!(
        mappings[0]["EventSourceArn"],
        s.d["queues"]["CommandQueue"]["attributes"]["QueueArn"]
    );
    assert_eq!(
        targets[0]["InputTransformer"]["InputTemplate"],
        r#"{"ruleArn": "<aws.events.rule-arn>", "event": <aws.events.event.json>}"#
    );
    // The KEK itself is nowhere in any function's configuration.
    let text = s.d["functions"].to_string();
    let kek = base64::engine::general_purpose::STANDARD.encode(common::KEK);
    assert!(!text.contains(&kek) && !text.contains("{{resolve:"));

    // Roles: only Lambda may assume them; inline statements only, each
    // naming this stack's resources.
    for role in [
        "CancelFunctionRole",
        "ReconcilerFunctionRole",
        "AutomationFunctionRole",
    ] {
        let r = &s.d["roles"][role];
        assert_eq!(
            r["trust"]["Statement"][0]["Principal"]["Service"], "lambda.amazonaws.com",
            "{role}"
        );
        assert_eq!(
            r["attached"],
            serde_json::json!([]),
            "{role}: managed policies"
        );
    }
    for logical in ["CancelFunction", "ReconcilerFunction", "AutomationFunction"] {
        assert_eq!(s.function(logical)["runtime"], "provided.al2023");
        assert_eq!(s.function(logical)["handler"], "bootstrap");
    }
}

fn env_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The non-logs statement ids of a role's policies.
fn statement_ids(s: &Deployed, role: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in s.d["roles"][role]["policies"].as_object().unwrap().values() {
        for st in doc["Statement"].as_array().unwrap() {
            let actions = st["Action"].to_string();
            // Logs and trace segments are written by Lambda's environment
            // (its log agent, its X-Ray daemon) with the role, not by us.
            if !actions.contains("logs:") && !actions.contains("xray:") {
                out.insert(
                    st["Sid"]
                        .as_str()
                        .expect("every statement has a Sid")
                        .to_owned(),
                );
            }
        }
    }
    out
}

/// Runs the cancel function over every sample event under its own role.
async fn cancel_function_answers_every_event(
    s: &Deployed,
    endpoint: &str,
    admin: &aws_config::SdkConfig,
    code: &Path,
) {
    let stack = s.stack(admin);
    // The bundled seed's states again (the automation samples cancelled
    // some): the samples then make transitions, each sending its stop.
    stack.seed().await;
    let runtime = RuntimeApi::start().await;
    let mut function = LambdaProcess::spawn(
        code,
        &s.lambda_env("CancelFunction", &runtime.addr, endpoint),
    );
    let successes = run_every_event(&mut function, &runtime, &stack).await;
    assert!(successes >= 8, "{successes}");
    function.child.kill().await.ok();
    let logs = function.logs();
    assert!(
        !logs.contains("\"level\":\"ERROR\""),
        "the function logged an error under its own role:\n{logs}"
    );
}

/// The automation function under its own role: every automation sample,
/// then the parts the Lambda service plays with that same role: the SQS
/// poller (receive a command, invoke, delete it or give it back) and the
/// on-failure destination.
async fn automation_function_under_its_role(
    s: &Deployed,
    endpoint: &str,
    admin: &aws_config::SdkConfig,
    admin_key: &Value,
    code: &Path,
) {
    let stack = s.stack(admin);
    let runtime = RuntimeApi::start().await;
    let mut function = LambdaProcess::spawn(
        code,
        &s.lambda_env("AutomationFunction", &runtime.addr, endpoint),
    );
    let function_arn = s.function("AutomationFunction")["arn"].as_str().unwrap();
    let alias = s.function("AutomationFunction")["aliases"]["events"]
        .as_str()
        .unwrap();
    run_every_automation_event(&mut function, &runtime, &stack, function_arn).await;

    // A cancel request put on the bus: what the rule hands the function
    // (moto plays the rule and its input transformer), then the function.
    stack
        .put_publish(&PublishRecord::new(
            common::alice_key(40),
            PublishState::Queued,
        ))
        .await;
    let bus = s.d["buses"]["AutomationBus"]["name"].as_str().unwrap();
    let put = |detail_type: &str| {
        stack_py(&[
            "rule-deliver",
            "--endpoint",
            endpoint,
            "--key",
            admin_key["access_key_id"].as_str().unwrap(),
            "--secret",
            admin_key["secret_access_key"].as_str().unwrap(),
            "--bus",
            bus,
            "--detail-type",
            detail_type,
            "--detail",
            r#"{"schemaVersion": 1, "uid": "alice", "aid": 1, "itid": 2, "pitid": 40, "reason": "over budget", "requestedBy": "watchdog"}"#,
        ])
    };
    let ignored = put("Publish Cancelled");
    let (_, rule) = ignored.as_object().unwrap().iter().next().unwrap();
    assert_eq!(rule["delivered"], serde_json::json!([]), "{ignored}");
    let delivered = put("Publish Cancel Requested");
    let (_, rule) = delivered.as_object().unwrap().iter().next().unwrap();
    let payloads = rule["delivered"].as_array().unwrap();
    assert_eq!(payloads.len(), 1, "{delivered}");
    // The same payload from a direct invoker (who may invoke the function
    // itself, not the alias): refused, nothing written.
    runtime.set_invoked_arn(function_arn);
    let Outcome::Error(e) = function.invoke(&runtime, &payloads[0].to_string()).await else {
        panic!("a direct invoke passed as the rule: {}", function.logs());
    };
    assert_eq!(e["errorType"], "UForge.UnsupportedEvent", "{e}");
    let item = stack.publish_item("alice", "1/2/40").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "queued");
    assert!(stack.drain().await.is_empty());
    // The rule's delivery, through the alias it targets.
    runtime.set_invoked_arn(alias);
    let Outcome::Response(answer) = function.invoke(&runtime, &payloads[0].to_string()).await
    else {
        panic!("{}", function.logs());
    };
    assert_eq!(answer["outcome"], "cancelled", "{answer}");
    assert_eq!(answer["cancelSource"], "eventbridge", "{answer}");
    assert_eq!(answer["cancelledBy"], rule["arn"], "{answer}");
    assert_eq!(answer["reason"], "over budget", "{answer}");
    let account = s.function("AutomationFunction")["arn"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(4)
        .unwrap()
        .to_owned();
    assert_eq!(
        answer["origin"],
        format!("account {account} source rehearsal.automation"),
        "{answer}"
    );
    assert_eq!(stack.drain().await.len(), 1);

    // The SQS poller, with the function's role.
    let commands = s.queue_url("CommandQueue");
    let commands_arn = s.d["queues"]["CommandQueue"]["attributes"]["QueueArn"]
        .as_str()
        .unwrap();
    stack
        .put_publish(&PublishRecord::new(
            common::alice_key(41),
            PublishState::Publishing,
        ))
        .await;
    let admin_sqs = aws_sdk_sqs::Client::new(admin);
    for body in [
        r#"{"type": "uforge.publish.cancel", "schemaVersion": 1, "uid": "alice", "aid": 1, "itid": 2, "pitid": 41, "reason": "rehearsal"}"#,
        "not a command",
    ] {
        admin_sqs
            .send_message()
            .queue_url(commands)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let poller = aws_sdk_sqs::Client::new(&s.role_sdk("AutomationFunction", endpoint).await);
    poller
        .get_queue_attributes()
        .queue_url(commands)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .expect("the poller reads the queue's attributes");
    let received = poller
        .receive_message()
        .queue_url(commands)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("the poller receives")
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 2);
    let records: Vec<Value> = received
        .iter()
        .map(|m| {
            let sender = m
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SenderId))
                .cloned()
                .unwrap_or_default();
            serde_json::json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                "body": m.body(), "attributes": {"SenderId": sender}, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": commands_arn, "awsRegion": "us-east-1"})
        })
        .collect();
    // Lambda's poller invokes what the mapping names: the alias.
    runtime.set_invoked_arn(alias);
    let Outcome::Response(answer) = function
        .invoke(
            &runtime,
            &serde_json::json!({ "Records": records }).to_string(),
        )
        .await
    else {
        panic!("{}", function.logs());
    };
    let failed: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{answer}");
    for m in &received {
        if failed.contains(&m.message_id().unwrap()) {
            // Back to the queue at once (after five, the DLQ).
            poller
                .change_message_visibility()
                .queue_url(commands)
                .receipt_handle(m.receipt_handle().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .expect("the poller gives a failed message back");
        } else {
            poller
                .delete_message()
                .queue_url(commands)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("the poller deletes a done message");
        }
    }
    let item = stack.publish_item("alice", "1/2/41").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "cancelled");
    assert_eq!(item[attr::CANCEL_SOURCE].as_s().unwrap(), "sqs");
    assert_eq!(item[attr::CANCEL_REASON].as_s().unwrap(), "rehearsal");
    assert!(!item[attr::CANCELLED_BY].as_s().unwrap().is_empty());
    assert_eq!(stack.drain().await.len(), 1);

    // The on-failure destination: Lambda sends a failed asynchronous
    // invocation's record with the function's role.
    poller
        .send_message()
        .queue_url(s.queue_url("AutomationFailureQueue"))
        .message_body(
            r#"{"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": {}}"#,
        )
        .send()
        .await
        .expect("the failure destination accepts the function's role");
    function.child.kill().await.ok();
}

/// A cancel whose stop was never confirmed (the function died after its
/// write): the reconciler, under its own role, re-sends it and clears it.
async fn reconciler_repairs_a_pending_stop(
    s: &Deployed,
    endpoint: &str,
    admin: &aws_config::SdkConfig,
    code: &Path,
) {
    let stack = s.stack(admin);
    let mut record = PublishRecord::new(common::alice_key(40), PublishState::Publishing);
    let stamp = CancelStamp::new(
        "crashed-cancel".into(),
        Timestamp(Timestamp::now().0 - 300),
        publish_cancel::domain::CancelAudit::http(&record.key.uid),
    );
    record = record
        .cancelled(&stamp, &publish_cancel::cancel::new_attempt())
        .expect("a running publish");
    stack.put_publish(&record).await;
    assert!(stack.drain().await.is_empty());

    let runtime = RuntimeApi::start().await;
    let mut function = LambdaProcess::spawn(
        code,
        &s.lambda_env("ReconcilerFunction", &runtime.addr, endpoint),
    );
    let scheduled = r#"{"version":"0","id":"1","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-11-27T00:00:00Z","region":"us-east-1","resources":[],"detail":{}}"#;
    let outcome = function.invoke(&runtime, scheduled).await;
    function.child.kill().await.ok();
    let Outcome::Response(report) = outcome else {
        panic!("reconciler failed: {outcome:?}\n{}", function.logs());
    };
    assert_eq!(report["found"], 1, "{report}");
    assert_eq!(report["resent"], 1, "{report}");
    let stops = stack.drain().await;
    assert_eq!(stops.len(), 1);
    let body: Value = serde_json::from_str(stops[0].body().unwrap()).unwrap();
    assert_eq!(body["requestId"], "crashed-cancel", "{body}");
    let item = stack.publish_item("alice", "1/2/40").await.unwrap();
    assert!(!item.contains_key(attr::STOP_PENDING), "mark cleared");
}

/// Every call a role could try, by IAM action and resource (logical name):
/// the rehearsal tries each one its role is not granted (`stack.py
/// grants`) and expects IAM's 403. Granting a role more in the template
/// shrinks what is tried here; nothing is listed twice.
const ACTIONS: &[(&str, &[&str])] = &[
    (
        "dynamodb",
        &[
            "GetItem",
            "PutItem",
            "DeleteItem",
            "UpdateItem",
            "Scan",
            "Query",
        ],
    ),
    ("sqs", &["SendMessage", "ReceiveMessage", "PurgeQueue"]),
    ("secretsmanager", &["GetSecretValue"]),
];
const TABLES: &[&str] = &["UsersTable", "PublishesTable"];
const QUEUES: &[&str] = &[
    "StopQueue",
    "StopDeadLetterQueue",
    "CommandQueue",
    "AutomationFailureQueue",
];
const PENDING_INDEX: &str = "PublishesTable/index/pendingStops";
/// A secret the template never names.
const OTHER_SECRET: &str = "OtherSecret";

/// Each "action resource" pair of the catalogue.
fn catalogue() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (service, actions) in ACTIONS {
        let resources: Vec<&'static str> = match *service {
            "dynamodb" => TABLES.to_vec(),
            "sqs" => QUEUES.to_vec(),
            _ => vec!["ApiKeyKekSecret", OTHER_SECRET],
        };
        for action in *actions {
            for r in &resources {
                out.push((format!("{service}:{action}"), *r));
            }
        }
    }
    out.push(("dynamodb:Query".into(), PENDING_INDEX));
    out
}

/// Tries `action` on `resource` with a role's clients: the HTTP status it
/// failed with, `None` when it was let through.
async fn attempt(
    s: &Deployed,
    clients: &(
        aws_sdk_dynamodb::Client,
        aws_sdk_sqs::Client,
        aws_sdk_secretsmanager::Client,
    ),
    action: &str,
    resource: &str,
) -> Option<u16> {
    let (ddb, sqs, sm) = clients;
    fn status<T, E>(
        r: Result<
            T,
            aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
        >,
    ) -> Option<u16> {
        r.err()
            .map(|e| e.raw_response().map_or(0, |r| r.status().as_u16()))
    }
    let key = || {
        std::collections::HashMap::from([
            (attr::UID.to_owned(), AttributeValue::S("alice".into())),
            (
                attr::PUBLISH_KEY.to_owned(),
                AttributeValue::S("1/2/3".into()),
            ),
        ])
    };
    let user = || {
        std::collections::HashMap::from([(
            attr::LOGIN.to_owned(),
            AttributeValue::S("alice".into()),
        )])
    };
    let (table, key) = match resource {
        "UsersTable" => (s.table("UsersTable").to_owned(), user()),
        _ => (s.table("PublishesTable").to_owned(), key()),
    };
    match action {
        "dynamodb:GetItem" => status(
            ddb.get_item()
                .table_name(table)
                .set_key(Some(key))
                .send()
                .await,
        ),
        // A new item, so an allowed put changes nothing the run looks at.
        "dynamodb:PutItem" => {
            let mut item = key;
            for v in item.values_mut() {
                *v = AttributeValue::S("mallory".into());
            }
            status(
                ddb.put_item()
                    .table_name(table)
                    .set_item(Some(item))
                    .send()
                    .await,
            )
        }
        "dynamodb:DeleteItem" => status(
            ddb.delete_item()
                .table_name(table)
                .set_key(Some(key))
                .condition_expression("attribute_exists(#k)")
                .expression_attribute_names("#k", "nothing")
                .send()
                .await,
        ),
        "dynamodb:UpdateItem" => status(
            ddb.update_item()
                .table_name(table)
                .set_key(Some(key))
                .update_expression("SET #x = :x")
                .expression_attribute_names("#x", "probe")
                .expression_attribute_values(":x", AttributeValue::S("x".into()))
                .send()
                .await,
        ),
        "dynamodb:Scan" => status(ddb.scan().table_name(table).limit(1).send().await),
        "dynamodb:Query" if resource == PENDING_INDEX => status(
            ddb.query()
                .table_name(table)
                .index_name(PENDING_STOPS_INDEX)
                .key_condition_expression("#p = :p")
                .expression_attribute_names("#p", attr::STOP_PENDING)
                .expression_attribute_values(
                    ":p",
                    AttributeValue::S(publish_cancel::domain::Shard::Numbered(0).value()),
                )
                .send()
                .await,
        ),
        "dynamodb:Query" => {
            let (name, value) = key
                .into_iter()
                .find(|(k, _)| k != attr::PUBLISH_KEY)
                .unwrap();
            status(
                ddb.query()
                    .table_name(table)
                    .key_condition_expression("#k = :k")
                    .expression_attribute_names("#k", name)
                    .expression_attribute_values(":k", value)
                    .send()
                    .await,
            )
        }
        "sqs:SendMessage" => {
            let url = s.queue_url(resource);
            let send = sqs.send_message().queue_url(url).message_body("{}");
            let send = if url.ends_with(".fifo") {
                send.message_group_id("g").message_deduplication_id("d")
            } else {
                send
            };
            status(send.send().await)
        }
        "sqs:ReceiveMessage" => status(
            sqs.receive_message()
                .queue_url(s.queue_url(resource))
                .visibility_timeout(0)
                .send()
                .await,
        ),
        "sqs:PurgeQueue" => status(
            sqs.purge_queue()
                .queue_url(s.queue_url(resource))
                .send()
                .await,
        ),
        "secretsmanager:GetSecretValue" => {
            let id = if resource == OTHER_SECRET {
                "some-other-secret"
            } else {
                KEK_SECRET
            };
            status(sm.get_secret_value().secret_id(id).send().await)
        }
        other => panic!("no way to try {other}"),
    }
}

/// What a role must not do is refused (403 from IAM): every action of the
/// catalogue its template role is not granted, and every publish attribute
/// its `UpdateItem` grant does not name (a worker's progress among them).
async fn least_privilege_refusals(s: &Deployed, endpoint: &str) -> usize {
    let grants = stack_py(&["grants"]);
    let attribute_grants = stack_py(&["attribute-grants"]);
    // Every attribute some role may write, and a worker's own.
    let mut attributes: BTreeSet<String> = BTreeSet::from([attr::PERCENTAGE.to_owned()]);
    for sids in attribute_grants.as_object().unwrap().values() {
        for names in sids.as_object().unwrap().values() {
            attributes.extend(
                names
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned()),
            );
        }
    }
    attributes.remove(attr::UID);
    attributes.remove(attr::PUBLISH_KEY);
    let mut tried = 0;
    for (function, _) in lambda_functions() {
        let role = format!("{function}Role");
        let granted: BTreeSet<&str> = grants[&role]
            .as_array()
            .unwrap_or_else(|| panic!("{role} is not a role of the template"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let sdk = s.role_sdk(&function, endpoint).await;
        let clients = (
            aws_sdk_dynamodb::Client::new(&sdk),
            aws_sdk_sqs::Client::new(&sdk),
            aws_sdk_secretsmanager::Client::new(&sdk),
        );
        for (action, resource) in catalogue() {
            if granted.contains(format!("{action} {resource}").as_str()) {
                continue;
            }
            let answer = attempt(s, &clients, &action, resource).await;
            assert_eq!(
                answer,
                Some(403),
                "{role}: {action} on {resource} must be refused"
            );
            tried += 1;
        }
        // The attributes its UpdateItem on publishes may not write.
        let own: BTreeSet<String> = attribute_grants[&role]
            .as_object()
            .map(|sids| {
                sids.values()
                    .flat_map(|v| v.as_array().unwrap().iter())
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        for name in attributes.difference(&own) {
            let answer = clients
                .0
                .update_item()
                .table_name(s.table("PublishesTable"))
                .key(attr::UID, AttributeValue::S("alice".into()))
                .key(attr::PUBLISH_KEY, AttributeValue::S("1/2/3".into()))
                .update_expression("SET #a = :a")
                .expression_attribute_names("#a", name)
                .expression_attribute_values(":a", AttributeValue::S("x".into()))
                .send()
                .await;
            let status = answer
                .err()
                .and_then(|e| e.raw_response().map(|r| r.status().as_u16()));
            assert_eq!(status, Some(403), "{role}: writing {name} must be refused");
            tried += 1;
        }
    }
    tried
}

/// One IAM decision moto made (tests/moto_serial.py writes them).
#[derive(serde::Deserialize)]
struct Decision {
    principal: String,
    action: String,
    resource: String,
    allowed: bool,
    sids: Vec<String>,
}

fn decisions(path: &Path) -> Vec<Decision> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_deployed_runs_every_binary_under_its_own_role() {
    let audit = std::env::temp_dir().join(format!("uforge-iam-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let moto = Moto::private(&[("MOTO_IAM_AUDIT", audit.to_str().unwrap())]);
    let endpoint = moto.endpoint.clone();
    let cancel_bin = function_binary("CancelFunction");
    let reconciler_bin = function_binary("ReconcilerFunction");
    let automation_bin = function_binary("AutomationFunction");
    eprintln!(
        "rehearsal: {}, {} and {}",
        cancel_bin.display(),
        reconciler_bin.display(),
        automation_bin.display()
    );

    // Before IAM is enforced: an identity for the test itself, the KEK
    // secret (as an operator creates it before deploying), the stacks.
    let admin_key = stack_py(&["admin", "--endpoint", &endpoint]);
    let admin = sdk_config_as(
        &endpoint,
        admin_key["access_key_id"].as_str().unwrap(),
        admin_key["secret_access_key"].as_str().unwrap(),
        None,
    )
    .await;
    aws_sdk_secretsmanager::Client::new(&admin)
        .create_secret()
        .name(KEK_SECRET)
        .secret_string(base64::engine::general_purpose::STANDARD.encode(common::KEK))
        .send()
        .await
        .expect("create the KEK secret");
    let stacks = [
        deploy(&endpoint, "rehearsal-std", false, &cancel_bin),
        deploy(&endpoint, "rehearsal-fifo", true, &cancel_bin),
    ];
    for s in &stacks {
        check_read_back(s);
        s.stack(&admin).seed().await;
    }

    stack_py(&["enforce-iam", "--endpoint", &endpoint]);
    for s in &stacks {
        // Automation first: its samples expect the bundled seed's states.
        automation_function_under_its_role(s, &endpoint, &admin, &admin_key, &automation_bin).await;
        cancel_function_answers_every_event(s, &endpoint, &admin, &cancel_bin).await;
        reconciler_repairs_a_pending_stop(s, &endpoint, &admin, &reconciler_bin).await;
    }

    // Every call the code made under a function role was allowed, and
    // every non-logs statement of each role was needed by at least one.
    let before_refusals = decisions(&audit);
    for s in &stacks {
        for (function, _) in lambda_functions() {
            let role = &format!("{function}Role");
            let principal = format!("assumed-role/{}/", s.role_name(role));
            let mine: Vec<&Decision> = before_refusals
                .iter()
                .filter(|d| d.principal.contains(&principal))
                .collect();
            assert!(!mine.is_empty(), "{function}: no calls audited");
            for d in &mine {
                assert!(
                    d.allowed,
                    "{function}: {} on {} was denied",
                    d.action, d.resource
                );
            }
            let used: BTreeSet<String> = mine.iter().flat_map(|d| d.sids.iter().cloned()).collect();
            let unused: Vec<String> = statement_ids(s, role).difference(&used).cloned().collect();
            assert!(
                unused.is_empty(),
                "{role}: statements never used: {unused:?}"
            );
        }
    }

    // And what the roles must not do is refused.
    let mut tried = 0;
    for s in &stacks {
        tried += least_privilege_refusals(s, &endpoint).await;
    }
    let refusals = decisions(&audit).len() - before_refusals.len();
    assert!(tried >= 60, "only {tried} refusals tried");
    assert_eq!(refusals, tried, "each refusal was IAM's (audited)");
}

/// `uforge-admin setup` keeps its own copy of the schema (it creates
/// tables without CloudFormation); it must be the template's.
#[tokio::test]
async fn uforge_admin_setup_creates_the_template_s_tables() {
    let sdk = common::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let n = std::process::id();
    let (users_a, publishes_a) = (format!("admin-users-{n}"), format!("admin-publishes-{n}"));
    publish_cancel::admin::create_tables(&dynamo, &users_a, &publishes_a)
        .await
        .unwrap();
    let (users_t, publishes_t) = (format!("tpl-users-{n}"), format!("tpl-publishes-{n}"));
    common::template::create_table(&dynamo, "UsersTable", &users_t).await;
    common::template::create_table(&dynamo, "PublishesTable", &publishes_t).await;
    for (a, t) in [(users_a, users_t), (publishes_a, publishes_t)] {
        assert_eq!(
            describe(&dynamo, &a).await,
            describe(&dynamo, &t).await,
            "{a} vs {t}"
        );
    }
}

/// A table's schema: key, attribute types, indexes with keys and
/// projection, billing, stream.
async fn describe(dynamo: &aws_sdk_dynamodb::Client, name: &str) -> String {
    let t = dynamo
        .describe_table()
        .table_name(name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let mut defs: Vec<String> = t
        .attribute_definitions()
        .iter()
        .map(|d| format!("{}:{}", d.attribute_name(), d.attribute_type()))
        .collect();
    defs.sort();
    let keys = |k: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        k.iter()
            .map(|e| format!("{}:{}", e.attribute_name(), e.key_type()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut gsis: Vec<String> = t
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            format!(
                "{}[{}]{:?}",
                i.index_name().unwrap_or_default(),
                keys(i.key_schema()),
                i.projection().and_then(|p| p.projection_type())
            )
        })
        .collect();
    gsis.sort();
    format!(
        "keys {} defs {:?} gsis {:?} billing {:?} stream {:?}",
        keys(t.key_schema()),
        defs,
        gsis,
        t.billing_mode_summary().and_then(|b| b.billing_mode()),
        t.stream_specification()
            .filter(|s| s.stream_enabled())
            .and_then(|s| s.stream_view_type())
    )
}

/// The artefact `sam deploy` ships (scripts/test builds it for arm64 and
/// names its directory in UFORGE_ARTEFACT_DIR): each binary fits the size
/// budget and asks for no glibc symbol newer than Amazon Linux 2023's 2.34,
/// or it would not even load on `provided.al2023`.
#[test]
fn the_artefact_fits_and_loads_on_amazon_linux_2023() {
    const MAX_BYTES: u64 = 6_000_000;
    const GLIBC_FLOOR: (u32, u32) = (2, 34);
    let Some(dir) = std::env::var_os("UFORGE_ARTEFACT_DIR") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the artefact: run scripts/test, which builds it"
        );
        eprintln!("skipped: UFORGE_ARTEFACT_DIR is not set (scripts/test sets it)");
        return;
    };
    // Every binary `sam build` ships (lambda-functions.txt).
    let shipped: Vec<String> = lambda_functions().into_iter().map(|(_, b)| b).collect();
    assert!(shipped.len() >= 3, "the manifest's binaries: {shipped:?}");
    for name in &shipped {
        let path = PathBuf::from(&dir).join(name);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(
            size <= MAX_BYTES,
            "{name}: {size} bytes, over the {MAX_BYTES} budget"
        );
        let out = std::process::Command::new("readelf")
            .args(["-W", "-V"])
            .arg(&path)
            .output()
            .expect("readelf (binutils)");
        let text = String::from_utf8_lossy(&out.stdout);
        let versions: Vec<(u32, u32)> = text
            .split("GLIBC_")
            .skip(1)
            .filter_map(|rest| {
                let v: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let mut parts = v.split('.').map(|p| p.parse::<u32>());
                match (parts.next(), parts.next()) {
                    (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
                    _ => None,
                }
            })
            .collect();
        assert!(
            !versions.is_empty(),
            "{name}: no GLIBC versions found (not a glibc binary?)"
        );
        let newest = versions.iter().max().copied().unwrap_or_default();
        assert!(
            newest <= GLIBC_FLOOR,
            "{name} needs GLIBC_{}.{}, newer than Amazon Linux 2023's 2.34",
            newest.0,
            newest.1
        );
        eprintln!(
            "{name}: {size} bytes, newest glibc symbol GLIBC_{}.{}",
            newest.0, newest.1
        );
    }
}
