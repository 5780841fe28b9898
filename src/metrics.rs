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

/// The service every function of the stack belongs to: a field of every
/// invocation's log lines, and the `Service` dimension of `ColdStart`.
pub const SERVICE: &str = "uforge-publish-cancel";

/// Where metric lines go: stdout (which Lambda ships to CloudWatch Logs)
/// when running as a Lambda function, nowhere otherwise.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: String,
}

/// Milliseconds since `started`: the latency every request line reports.
pub fn millis_since(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
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

    /// The EMF line of one request, as JSON text (no newline). Written
    /// straight into one buffer: it is on every request's path, and a
    /// `Value` tree of it cost more than the rest of the metrics put together.
    pub fn request_line(&self, f: &RequestFacts<'_>, timestamp_ms: u64) -> String {
        use std::fmt::Write as _;
        let flag = |b: bool| if b { '1' } else { '0' };
        let mut out = String::with_capacity(REQUEST_DIRECTIVES_WITH_AUTH.len() + 384);
        out.push_str("{\"Function\":");
        push_json_str(&mut out, &self.function);
        out.push_str(",\"Route\":");
        push_json_str(&mut out, f.route);
        out.push_str(",\"Outcome\":\"");
        out.push_str(f.outcome.as_str());
        out.push_str("\",\"requestId\":");
        push_json_str(&mut out, f.request_id);
        if let Some(denied) = f.auth.denied {
            out.push_str(",\"AuthFailure\":\"");
            out.push_str(denied.as_str());
            out.push('"');
        }
        let latency = if f.latency_ms.is_finite() {
            f.latency_ms.max(0.0)
        } else {
            0.0
        };
        let _ = write!(
            out,
            ",\"Requests\":1,\"Latency\":{latency:.3},\"AuthFailures\":{},\"Argon2Verifications\":{},\
             \"CredentialCacheHits\":{},\"StopNotSent\":{},\"StopsUndeliverable\":{},\
             \"_aws\":{{\"Timestamp\":{timestamp_ms},\"CloudWatchMetrics\":",
            flag(f.auth.denied.is_some()),
            flag(f.auth.check == Check::Argon2),
            flag(f.auth.check == Check::CachedPassword),
            flag(f.outcome == Outcome::StopNotSent),
            // The queue refused the stop for good: parked, alarmed.
            flag(f.outcome == Outcome::StopUndeliverable),
        );
        out.push_str(if f.auth.denied.is_some() {
            REQUEST_DIRECTIVES_WITH_AUTH
        } else {
            REQUEST_DIRECTIVES
        });
        out.push_str("}}");
        out
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

    /// The EMF line of a process's first invocation: `ColdStart` 1, by
    /// `Function` and by `Service` (cold starts across the stack).
    pub fn cold_start_line(&self, timestamp_ms: u64) -> String {
        let metrics = [("ColdStart", "Count", json!(1))];
        let mut members = Map::new();
        members.insert("Function".into(), json!(self.function));
        members.insert("Service".into(), json!(SERVICE));
        members.insert("ColdStart".into(), json!(1));
        members.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive(&[&["Function"], &["Service"]], &metrics)]}),
        );
        Value::Object(members).to_string()
    }

    /// Writes `line` (JSON text) to stdout as one line.
    pub fn emit(&self, mut line: String) {
        line.push('\n');
        // One write per line, so lines from concurrent requests cannot
        // interleave; a closed stdout loses metrics, never a request.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// The metric declarations of a request line (`_aws.CloudWatchMetrics`):
/// totals by `Function`, `Requests` by `Outcome` and by `Route`. Constant,
/// so written as text once (`the_request_directives_are_what_the_metrics_say`).
const REQUEST_DIRECTIVES: &str = concat!(
    r#"[{"Namespace":"UForge/PublishCancel","Dimensions":[["Function"]],"Metrics":["#,
    r#"{"Name":"Requests","Unit":"Count"},{"Name":"Latency","Unit":"Milliseconds"},"#,
    r#"{"Name":"AuthFailures","Unit":"Count"},{"Name":"Argon2Verifications","Unit":"Count"},"#,
    r#"{"Name":"CredentialCacheHits","Unit":"Count"},{"Name":"StopNotSent","Unit":"Count"},"#,
    r#"{"Name":"StopsUndeliverable","Unit":"Count"}]},"#,
    r#"{"Namespace":"UForge/PublishCancel","Dimensions":[["Function","Outcome"],["Function","Route"]],"#,
    r#""Metrics":[{"Name":"Requests","Unit":"Count"}]}]"#
);

/// The same, and `AuthFailures` by `AuthFailure` (a refused caller).
const REQUEST_DIRECTIVES_WITH_AUTH: &str = concat!(
    r#"[{"Namespace":"UForge/PublishCancel","Dimensions":[["Function"]],"Metrics":["#,
    r#"{"Name":"Requests","Unit":"Count"},{"Name":"Latency","Unit":"Milliseconds"},"#,
    r#"{"Name":"AuthFailures","Unit":"Count"},{"Name":"Argon2Verifications","Unit":"Count"},"#,
    r#"{"Name":"CredentialCacheHits","Unit":"Count"},{"Name":"StopNotSent","Unit":"Count"},"#,
    r#"{"Name":"StopsUndeliverable","Unit":"Count"}]},"#,
    r#"{"Namespace":"UForge/PublishCancel","Dimensions":[["Function","Outcome"],["Function","Route"]],"#,
    r#""Metrics":[{"Name":"Requests","Unit":"Count"}]},"#,
    r#"{"Namespace":"UForge/PublishCancel","Dimensions":[["Function","AuthFailure"]],"#,
    r#""Metrics":[{"Name":"AuthFailures","Unit":"Count"}]}]"#
);

/// `s` as a JSON string, escaped, appended to `out`.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            use std::fmt::Write as _;
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escaped);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
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

/// Milliseconds since the Unix epoch, for `_aws.Timestamp`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_in_milliseconds() {
        let now = std::time::Instant::now();
        let Some(started) = now.checked_sub(std::time::Duration::from_millis(1500)) else {
            return; // a clock younger than 1.5 s: nothing to measure against
        };
        let ms = millis_since(started);
        assert!((1500.0..1_500_000.0).contains(&ms), "{ms}");
    }

    /// The request line's constant declarations say what the line holds:
    /// the namespace, each total by `Function`, `Requests` by `Outcome`
    /// and by `Route`, `AuthFailures` by `AuthFailure` when refused.
    #[test]
    fn the_request_directives_are_what_the_metrics_say() {
        let totals = [
            ("Requests", "Count"),
            ("Latency", "Milliseconds"),
            ("AuthFailures", "Count"),
            ("Argon2Verifications", "Count"),
            ("CredentialCacheHits", "Count"),
            ("StopNotSent", "Count"),
            ("StopsUndeliverable", "Count"),
        ];
        let metrics = |names: &[(&str, &str)]| -> Vec<Value> {
            names
                .iter()
                .map(|(n, u)| json!({"Name": n, "Unit": u}))
                .collect()
        };
        let declare = |dimensions: Value, names: &[(&str, &str)]| json!({"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": metrics(names)});
        let ok = json!([
            declare(json!([["Function"]]), &totals),
            declare(
                json!([["Function", "Outcome"], ["Function", "Route"]]),
                &[("Requests", "Count")]
            ),
        ]);
        let mut refused = ok.clone();
        refused.as_array_mut().unwrap().push(declare(
            json!([["Function", "AuthFailure"]]),
            &[("AuthFailures", "Count")],
        ));
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(parse(REQUEST_DIRECTIVES), ok);
        assert_eq!(parse(REQUEST_DIRECTIVES_WITH_AUTH), refused);
    }

    #[test]
    fn strings_are_escaped_as_json_does() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "new\nline\ttab\r",
            "\u{1}\u{1f}",
            "é€😀",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
