//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines: CloudWatch
//! Logs turns each line into metric data points, so recording a metric is
//! one `write` to stdout, with no API call, no client, no extra latency.
//!
//! Every metric carries the dimension `Function` (the Lambda function's
//! name, so two stacks in one account do not mix); breakdowns add one more
//! dimension with a small, fixed set of values (`Outcome`, `AuthFailure`).
//! A line holds no path, login, header or query: only counts, a latency,
//! the bounded dimension values and the Lambda request id.

use std::io::Write as _;

use serde_json::{json, Map, Value};

use crate::auth::{AuthTrace, Check};

/// The CloudWatch namespace of every metric here.
pub const NAMESPACE: &str = "UForge/PublishCancel";

/// Where metric lines go: stdout (which Lambda ships to CloudWatch Logs)
/// when running as a Lambda function, nowhere otherwise.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: String,
}

/// What one request did, as metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub request_id: &'a str,
    /// `ApiError::outcome` or `cancelled` / `already_cancelled`.
    pub outcome: &'static str,
    pub auth: AuthTrace,
    pub stop_not_sent: bool,
    /// The queue refused the stop for good: parked, alarmed.
    pub stop_undeliverable: bool,
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
        members.insert("Outcome".into(), json!(f.outcome));
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
            ("StopNotSent", "Count", json!(flag(f.stop_not_sent))),
            (
                "StopsUndeliverable",
                "Count",
                json!(flag(f.stop_undeliverable)),
            ),
        ];
        let mut directives = vec![
            directive(&[&["Function"]], &totals),
            directive(
                &[&["Function", "Outcome"]],
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

    /// The EMF line of one reconciler run.
    pub fn reconcile_line(
        &self,
        report: &crate::reconcile::ReconcileReport,
        timestamp_ms: u64,
    ) -> Value {
        let metrics = [
            ("PendingStops", "Count", json!(report.found)),
            ("StopsResent", "Count", json!(report.resent)),
            ("StopsStillPending", "Count", json!(report.failed)),
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

/// Checks `line` against the EMF specification's required structure:
/// `_aws.Timestamp` (integer ms), `_aws.CloudWatchMetrics` (non-empty), each
/// directive with a `Namespace`, 1–30-key dimension sets whose keys are
/// top-level string members, and 1–100 metrics, each a top-level number.
/// Returns what is wrong, for tests.
pub fn check_emf(line: &Value) -> Result<(), String> {
    let aws = line.get("_aws").ok_or("no _aws")?;
    aws["Timestamp"]
        .as_u64()
        .ok_or("_aws.Timestamp is not an integer")?;
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    for d in directives {
        let ns = d["Namespace"]
            .as_str()
            .ok_or("a directive has no Namespace")?;
        if ns.is_empty() || ns.len() > 255 {
            return Err(format!("bad Namespace {ns:?}"));
        }
        for set in d["Dimensions"]
            .as_array()
            .ok_or("Dimensions is not an array")?
        {
            let keys = set.as_array().ok_or("a dimension set is not an array")?;
            if keys.is_empty() || keys.len() > 30 {
                return Err(format!("dimension set of {} keys", keys.len()));
            }
            for k in keys {
                let k = k.as_str().ok_or("a dimension key is not a string")?;
                if !line[k].is_string() {
                    return Err(format!("dimension {k} has no string value"));
                }
            }
        }
        let metrics = d["Metrics"].as_array().ok_or("Metrics is not an array")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err(format!("{} metrics in a directive", metrics.len()));
        }
        for m in metrics {
            let name = m["Name"].as_str().ok_or("a metric has no Name")?;
            if !line[name].is_number() {
                return Err(format!("metric {name} has no numeric value"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Denied, Scheme};

    fn facts(auth: AuthTrace, outcome: &'static str) -> RequestFacts<'static> {
        RequestFacts {
            request_id: "r-1",
            outcome,
            auth,
            stop_not_sent: false,
            stop_undeliverable: false,
            latency_ms: 12.345_678,
        }
    }

    #[test]
    fn a_request_line_is_valid_emf_with_bounded_dimensions() {
        let m = Metrics::new("stack-CancelFunction-ABC");
        let ok = AuthTrace {
            scheme: Scheme::Basic,
            check: Check::CachedPassword,
            denied: None,
        };
        let line = m.request_line(&facts(ok, "cancelled"), 1_795_718_847_000);
        check_emf(&line).unwrap();
        assert_eq!(line["Function"], "stack-CancelFunction-ABC");
        assert_eq!(line["Outcome"], "cancelled");
        assert_eq!(line["CredentialCacheHits"], 1);
        assert_eq!(line["Argon2Verifications"], 0);
        assert_eq!(line["Latency"], 12.346);
        assert!(line.get("AuthFailure").is_none());
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
            2
        );

        let refused = AuthTrace {
            scheme: Scheme::Basic,
            check: Check::Argon2,
            denied: Some(Denied::WrongPassword),
        };
        let line = m.request_line(&facts(refused, "unauthenticated"), 1);
        check_emf(&line).unwrap();
        assert_eq!(line["AuthFailure"], "wrong_password");
        assert_eq!(line["AuthFailures"], 1);
        assert_eq!(line["Argon2Verifications"], 1);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
            3
        );
    }

    #[test]
    fn reconcile_lines_are_valid_emf() {
        let report = crate::reconcile::ReconcileReport {
            found: 3,
            resent: 2,
            failed: 1,
            undeliverable: 4,
            unreadable: 5,
            cut_short: false,
        };
        let line = Metrics::new("f").reconcile_line(&report, 5);
        check_emf(&line).unwrap();
        assert_eq!(
            (
                &line["PendingStops"],
                &line["StopsResent"],
                &line["StopsStillPending"],
                &line["StopsUndeliverable"],
                &line["UnreadableRecords"]
            ),
            (&json!(3), &json!(2), &json!(1), &json!(4), &json!(5))
        );
    }

    /// Every alarm template.yaml sets on our namespace watches a metric the
    /// code writes (a renamed metric would leave an alarm that never fires).
    #[test]
    fn every_alarm_of_the_template_watches_an_emitted_metric() {
        let m = Metrics::new("f");
        let refused = AuthTrace {
            scheme: Scheme::Basic,
            check: Check::Argon2,
            denied: Some(Denied::UnknownUser),
        };
        let emitted: Vec<Value> = vec![
            m.request_line(&facts(refused, "unauthenticated"), 1),
            m.reconcile_line(&Default::default(), 1),
        ];
        let template = include_str!("../template.yaml");
        let mut alarms = 0;
        for block in template.split("Namespace: ").skip(1) {
            if !block.starts_with(NAMESPACE) {
                continue;
            }
            let name = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("MetricName: "))
                .expect("an alarm names its metric");
            assert!(
                emitted.iter().any(|line| line[name].is_number()),
                "template.yaml alarms on {name}, which no metric line carries"
            );
            alarms += 1;
        }
        assert!(alarms >= 3, "{alarms} alarms found");
    }

    #[test]
    fn the_checker_finds_what_the_specification_requires() {
        let good = Metrics::new("f").reconcile_line(&Default::default(), 5);
        for (pointer, bad) in [
            ("/_aws/Timestamp", json!("now")),
            ("/_aws/CloudWatchMetrics", json!([])),
            ("/_aws/CloudWatchMetrics/0/Namespace", Value::Null),
            ("/_aws/CloudWatchMetrics/0/Dimensions/0", json!([])),
            ("/_aws/CloudWatchMetrics/0/Dimensions/0/0", json!("Missing")),
            ("/_aws/CloudWatchMetrics/0/Metrics", json!([])),
            ("/PendingStops", json!("3")),
        ] {
            let mut line = good.clone();
            *line.pointer_mut(pointer).unwrap() = bad;
            assert!(check_emf(&line).is_err(), "{pointer}");
        }
    }
}
