//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines: CloudWatch
//! Logs turns each line into metric data points, so recording a metric is
//! one `write` to stdout, with no API call, no client, no extra latency.
//!
//! Every metric carries the dimension `Function` (the Lambda function's
//! name, so two stacks in one account do not mix); breakdowns add one more
//! dimension with a small, fixed set of values (`Outcome`, `Route`,
//! `AuthFailure`).
//! A line holds no path, login, header or query: only counts, a latency,
//! the bounded dimension values and the Lambda request id.

use std::io::Write as _;

use serde_json::{json, Map, Value};

use crate::auth::{AuthTrace, Check};
use crate::outcome::Outcome;

/// The CloudWatch namespace of every metric here.
pub const NAMESPACE: &str = "UForge/PublishCancel";

/// Where metric lines go: stdout (which Lambda ships to CloudWatch Logs)
/// when running as a Lambda function, nowhere otherwise.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: String,
}

/// What one request (or automation command) did, as metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub request_id: &'a str,
    /// The route's name (`api::route::Route::name`), or the automation's.
    pub route: &'static str,
    pub outcome: Outcome,
    pub auth: AuthTrace,
    pub latency_ms: f64,
}

impl Metrics {
    /// Metrics for the function named by Lambda's `AWS_LAMBDA_FUNCTION_NAME`;
    /// `None` outside Lambda (the local server and tests log no metrics).
    pub fn from_env(env: &crate::config::Env) -> Option<Metrics> {
        env.get("AWS_LAMBDA_FUNCTION_NAME")
            .map(|function| Metrics { function })
    }

    pub fn new(function: impl Into<String>) -> Metrics {
        Metrics {
            function: function.into(),
        }
    }

    /// The EMF line of one request.
    pub fn request_line(&self, f: &RequestFacts<'_>, timestamp_ms: u64) -> Value {
        let flag = |b: bool| u8::from(b);
        let auth_failed = f.auth.denied.is_some();
        let mut members = Map::new();
        members.insert("Function".into(), json!(self.function));
        members.insert("Route".into(), json!(f.route));
        members.insert("Outcome".into(), json!(f.outcome.as_str()));
        members.insert("requestId".into(), json!(f.request_id));
        let mut totals = vec![
            ("Requests", "Count", json!(1)),
            ("Latency", "Milliseconds", json!(round(f.latency_ms))),
            ("AuthFailures", "Count", json!(flag(auth_failed))),
            (
                "Argon2Verifications",
                "Count",
                json!(flag(f.auth.check == Check::Argon2)),
            ),
            (
                "CredentialCacheHits",
                "Count",
                json!(flag(f.auth.check == Check::CachedPassword)),
            ),
            (
                "StopNotSent",
                "Count",
                json!(flag(f.outcome == Outcome::StopNotSent)),
            ),
            // The queue refused the stop for good: parked, alarmed.
            (
                "StopsUndeliverable",
                "Count",
                json!(flag(f.outcome == Outcome::StopUndeliverable)),
            ),
        ];
        let mut directives = vec![
            directive(&[&["Function"]], &totals),
            directive(
                &[&["Function", "Outcome"], &["Function", "Route"]],
                &[("Requests", "Count", json!(1))],
            ),
        ];
        if let Some(denied) = f.auth.denied {
            members.insert("AuthFailure".into(), json!(denied.as_str()));
            directives.push(directive(
                &[&["Function", "AuthFailure"]],
                &[("AuthFailures", "Count", json!(1))],
            ));
        }
        for (name, _, value) in totals.drain(..) {
            members.insert(name.into(), value);
        }
        members.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
        );
        Value::Object(members)
    }

    /// The EMF line of one page of a reconciler run (its counts).
    pub fn reconcile_line(
        &self,
        report: &crate::reconcile::ReconcileReport,
        timestamp_ms: u64,
    ) -> Value {
        let metrics = [
            ("PendingStops", "Count", json!(report.found)),
            ("StopsResent", "Count", json!(report.resent)),
            ("StopsStillPending", "Count", json!(report.failed)),
            ("StopsBusy", "Count", json!(report.busy)),
            ("StopsUndeliverable", "Count", json!(report.undeliverable)),
            ("UnreadableRecords", "Count", json!(report.unreadable)),
        ];
        let mut members = Map::new();
        members.insert("Function".into(), json!(self.function));
        for (name, _, value) in &metrics {
            members.insert((*name).into(), value.clone());
        }
        members.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive(&[&["Function"]], &metrics)]}),
        );
        Value::Object(members)
    }

    /// Writes `line` to stdout as one line.
    pub fn emit(&self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        // One write per line, so lines from concurrent requests cannot
        // interleave; a closed stdout loses metrics, never a request.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

fn directive(dimensions: &[&[&str]], metrics: &[(&str, &str, Value)]) -> Value {
    json!({
        "Namespace": NAMESPACE,
        "Dimensions": dimensions,
        "Metrics": metrics
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
            .collect::<Vec<_>>(),
    })
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Milliseconds since the Unix epoch, for `_aws.Timestamp`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
