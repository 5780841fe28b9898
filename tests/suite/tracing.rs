//! A request followed from Lambda to the worker: each function's
//! invocation trace (the Runtime API's `Lambda-Runtime-Trace-Id`) on every
//! DynamoDB and SQS call it makes (as the emulator's proxy sees them), on
//! the stop message it sends (`AWSTraceHeader`), and on each of its log
//! lines, with the cold start, the function version and the service.

use aws_sdk_dynamodb::types::AttributeValue as A;
use serde_json::Value;

use crate::common::ops::{self, Function, Ops};
use crate::common::runtime_api::{trace_id, Outcome};

/// The id the `n`th invocation of a function's Runtime API gets.
fn request_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Invokes `f` with `event` (its `n`th invocation): every call it made
/// carried the invocation's trace, and so did every log line it wrote in
/// the invocation. Returns the trace, and whether it was a cold start.
async fn traced(
    proxy: &crate::common::fault_proxy::FaultProxy,
    f: &mut Function,
    n: u64,
    event: &str,
) -> (String, Vec<Value>) {
    let trace = trace_id(&request_id(n));
    let before = proxy.traces().len();
    let answer = f
        .try_invoke(event, std::time::Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("{}: no answer\n{}", f.logical, f.process.logs()));
    assert!(
        matches!(answer, Outcome::Response(_)),
        "{}: {answer:?}",
        f.logical
    );
    let calls = proxy.traces()[before..].to_vec();
    assert!(!calls.is_empty(), "{}: no call to AWS", f.logical);
    for (operation, header) in &calls {
        assert_eq!(
            header.as_deref(),
            Some(trace.as_str()),
            "{}: {operation} without the invocation's trace",
            f.logical
        );
    }
    // Let the last lines reach us.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let lines = f.new_lines();
    let spanned: Vec<&Value> = lines.iter().filter(|l| l.get("span").is_some()).collect();
    assert!(
        !spanned.is_empty(),
        "{}: no line in the invocation: {lines:?}",
        f.logical
    );
    for line in &spanned {
        let span = &line["span"];
        assert_eq!(span["xrayTraceId"], trace.as_str(), "{}: {line}", f.logical);
        assert_eq!(
            span["requestId"],
            request_id(n).as_str(),
            "{}: {line}",
            f.logical
        );
        assert_eq!(span["functionVersion"], "7", "{}: {line}", f.logical);
        assert_eq!(
            span["service"], "uforge-publish-cancel",
            "{}: {line}",
            f.logical
        );
        assert_eq!(span["coldStart"], n == 1, "{}: {line}", f.logical);
    }
    let cold_lines = lines
        .iter()
        .filter(|l| l.get("ColdStart").is_some())
        .count();
    assert_eq!(
        cold_lines,
        usize::from(n == 1),
        "{}: ColdStart lines",
        f.logical
    );
    (trace, lines)
}

#[tokio::test]
async fn every_call_log_line_and_stop_carries_the_invocation_s_trace() {
    let mut ops = Ops::start().await;
    for pitid in [900, 901, 903] {
        ops.publish(pitid, "publishing").await;
    }
    // A stop left pending by an earlier cancel: the reconciler's to send.
    let long_ago = (publish_cancel::clock::now_secs() - 600).to_string();
    ops.stack
        .put_raw_publish(&[
            ("uid", A::S("alice".into())),
            ("publishKey", A::S("1/2/902".into())),
            ("state", A::S("cancelled".into())),
            ("cancelRequestId", A::S("req-902".into())),
            ("cancelledAt", A::N(long_ago)),
            ("cancelSource", A::S("http".into())),
            ("cancelledBy", A::S("alice".into())),
            ("stopPending", A::S("pending".into())),
        ])
        .await;

    let mut traces = std::collections::HashMap::new();
    let (t, _) = traced(
        &ops.proxy,
        &mut ops.cancel,
        1,
        &ops::http_event("DELETE", 900, "cancel", "alice-password"),
    )
    .await;
    traces.insert(900, t);
    let (t, _) = traced(
        &ops.proxy,
        &mut ops.cancel,
        2,
        &ops::http_event("DELETE", 903, "cancel", "alice-password"),
    )
    .await;
    traces.insert(903, t);
    let (t, _) = traced(&ops.proxy, &mut ops.automation, 1, &ops::command(901)).await;
    traces.insert(901, t);
    let (t, _) = traced(&ops.proxy, &mut ops.reconciler, 1, ops::RECONCILE).await;
    traces.insert(902, t);

    // Each stop carries the trace of the invocation that sent it.
    let stops = ops.stack.drain().await;
    assert_eq!(stops.len(), 4, "{stops:?}");
    for m in &stops {
        let body: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap();
        let pitid = body["pitid"].as_i64().unwrap();
        let header = m
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::AwsTraceHeader));
        assert_eq!(header, traces.get(&pitid), "stop of {pitid}");
    }
}
