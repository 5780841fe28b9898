//! CloudWatch's evaluation of the template's alarms, over metric data
//! points a test records: what `tests/suite/alarms.rs` injects failures
//! against. Only what the template uses is modelled (a metric, or
//! `SUM(METRICS())` over several; the statistics Sum, Average, Maximum,
//! Minimum, SampleCount and pNN; M out of N periods; the missing-data
//! treatments): an alarm using anything else fails the test, not passes it.

use std::collections::BTreeMap;

use serde_json::Value;

/// One data point as CloudWatch stores it: a metric (namespace, name and
/// its whole set of dimensions), the minute it fell in, its value.
#[derive(Debug, Clone)]
pub struct Point {
    pub namespace: String,
    pub metric: String,
    pub dims: BTreeMap<String, String>,
    pub minute: u32,
    pub value: f64,
}

impl Point {
    pub fn new(
        namespace: &str,
        metric: &str,
        dims: &[(&str, &str)],
        minute: u32,
        value: f64,
    ) -> Point {
        Point {
            namespace: namespace.into(),
            metric: metric.into(),
            dims: dims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            minute,
            value,
        }
    }
}

/// The data points of an EMF line (what CloudWatch Logs extracts from it).
pub fn emf_points(line: &Value, minute: u32) -> Vec<Point> {
    let mut out = Vec::new();
    for directive in line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let namespace = directive["Namespace"].as_str().unwrap_or_default();
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            let dims: BTreeMap<String, String> = set
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str())
                .map(|d| {
                    (
                        d.to_owned(),
                        line[d].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                let name = metric["Name"].as_str().unwrap_or_default();
                if let Some(value) = line[name].as_f64() {
                    out.push(Point {
                        namespace: namespace.into(),
                        metric: name.into(),
                        dims: dims.clone(),
                        minute,
                        value,
                    });
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Query {
    Metric {
        namespace: String,
        metric: String,
        dims: BTreeMap<String, String>,
        stat: String,
    },
    SumOfMetrics,
}

/// An alarm of the template (`stack.py alarms`), its dimension values
/// resolved against the rehearsed stack.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub name: String,
    queries: Vec<Query>,
    period_minutes: u32,
    evaluation_periods: u32,
    datapoints_to_alarm: u32,
    pub threshold: f64,
    pub threshold_parameter: Option<String>,
    comparison: String,
    treat_missing: String,
    pub notifies: bool,
}

/// A dimension's value in the template, as the stack `stack_name` has it:
/// a function's name is its logical id (the tests name them so).
fn resolve(value: &Value, stack_name: &str) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("Ref") {
                r.clone()
            } else if let Some(Value::String(s)) = o.get("Fn::Sub") {
                s.replace("${AWS::StackName}", stack_name)
            } else if let Some(Value::Array(a)) = o.get("Fn::GetAtt") {
                format!(
                    "{}.{}",
                    resolve(&a[0], stack_name),
                    resolve(&a[1], stack_name)
                )
            } else {
                panic!("a dimension value the evaluator cannot resolve: {value}")
            }
        }
        other => panic!("a dimension value the evaluator cannot resolve: {other}"),
    }
}

impl Alarm {
    /// Every alarm of template.yaml, for a stack named `stack_name`.
    pub fn all(stack_name: &str) -> Vec<Alarm> {
        super::template::alarms()
            .as_array()
            .expect("a list of alarms")
            .iter()
            .map(|a| Alarm::from_spec(a, stack_name))
            .collect()
    }

    fn from_spec(a: &Value, stack_name: &str) -> Alarm {
        let name = a["alarm"].as_str().unwrap_or_default().to_owned();
        let mut queries = Vec::new();
        let mut periods = Vec::new();
        for q in a["queries"].as_array().expect("queries") {
            if let Some(expression) = q["expression"].as_str() {
                assert_eq!(
                    expression, "SUM(METRICS())",
                    "{name}: an expression not modelled"
                );
                queries.push(Query::SumOfMetrics);
                continue;
            }
            periods.push(q["period"].as_u64().expect("a period"));
            queries.push(Query::Metric {
                namespace: q["namespace"].as_str().unwrap_or_default().into(),
                metric: q["metric"].as_str().unwrap_or_default().into(),
                dims: q["dimensions"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), resolve(v, stack_name)))
                    .collect(),
                stat: q["stat"].as_str().unwrap_or_default().into(),
            });
        }
        periods.dedup();
        assert_eq!(periods.len(), 1, "{name}: one period for all its metrics");
        assert!(periods[0] % 60 == 0, "{name}: a period of whole minutes");
        Alarm {
            queries,
            period_minutes: (periods[0] / 60) as u32,
            evaluation_periods: a["evaluationPeriods"].as_u64().unwrap_or(1) as u32,
            datapoints_to_alarm: a["datapointsToAlarm"].as_u64().unwrap_or(1) as u32,
            threshold: a["threshold"].as_f64().expect("a threshold"),
            threshold_parameter: a["thresholdParameter"].as_str().map(str::to_owned),
            comparison: a["comparison"].as_str().unwrap_or_default().into(),
            treat_missing: a["treatMissingData"].as_str().unwrap_or("missing").into(),
            notifies: a["notifies"].as_bool().unwrap_or(false),
            name,
        }
    }

    /// One metric's statistic over period `k`; `None` when it has no data.
    fn metric_value(&self, q: &Query, points: &[Point], k: u32) -> Option<f64> {
        let Query::Metric {
            namespace,
            metric,
            dims,
            stat,
        } = q
        else {
            return None;
        };
        let (from, to) = (k * self.period_minutes, (k + 1) * self.period_minutes);
        let mut values: Vec<f64> = points
            .iter()
            .filter(|p| {
                &p.namespace == namespace
                    && &p.metric == metric
                    && &p.dims == dims
                    && (from..to).contains(&p.minute)
            })
            .map(|p| p.value)
            .collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        Some(match stat.as_str() {
            "Sum" => values.iter().sum(),
            "Average" => values.iter().sum::<f64>() / n,
            "Maximum" => values.iter().copied().fold(f64::MIN, f64::max),
            "Minimum" => values.iter().copied().fold(f64::MAX, f64::min),
            "SampleCount" => n,
            p if p.starts_with('p') => {
                let pct: f64 = p[1..].parse().expect("pNN");
                values.sort_by(f64::total_cmp);
                let rank = ((pct / 100.0) * n).ceil().max(1.0) as usize;
                values[rank - 1]
            }
            other => panic!("{}: statistic {other} not modelled", self.name),
        })
    }

    /// The alarm's value for period `k`.
    fn value(&self, points: &[Point], k: u32) -> Option<f64> {
        if self
            .queries
            .iter()
            .any(|q| matches!(q, Query::SumOfMetrics))
        {
            let parts: Vec<f64> = self
                .queries
                .iter()
                .filter_map(|q| self.metric_value(q, points, k))
                .collect();
            (!parts.is_empty()).then(|| parts.iter().sum())
        } else {
            self.metric_value(&self.queries[0], points, k)
        }
    }

    fn breaches(&self, v: f64) -> bool {
        match self.comparison.as_str() {
            "GreaterThanThreshold" => v > self.threshold,
            "GreaterThanOrEqualToThreshold" => v >= self.threshold,
            "LessThanThreshold" => v < self.threshold,
            "LessThanOrEqualToThreshold" => v <= self.threshold,
            other => panic!("{}: comparison {other} not modelled", self.name),
        }
    }

    /// In ALARM when evaluated at the end of `minute`: at least M of the
    /// last N periods (the current one included) breach.
    pub fn in_alarm_at(&self, points: &[Point], minute: u32) -> bool {
        let current = minute / self.period_minutes;
        let first = current.saturating_sub(self.evaluation_periods - 1);
        let breaching = (first..=current)
            .filter(|&k| match self.value(points, k) {
                Some(v) => self.breaches(v),
                None => self.treat_missing == "breaching",
            })
            .count() as u32;
        breaching >= self.datapoints_to_alarm
    }

    /// Its value in each period up to `minutes`, for a failure's message.
    pub fn explain(&self, points: &[Point], minutes: u32) -> String {
        let periods = minutes.div_ceil(self.period_minutes);
        let values: Vec<String> = (0..periods)
            .map(|k| match self.value(points, k) {
                Some(v) => format!("{v}"),
                None => "-".into(),
            })
            .collect();
        format!(
            "{}: per {}-minute period [{}], {} {} of {} periods {}",
            self.name,
            self.period_minutes,
            values.join(", "),
            self.comparison,
            self.threshold,
            self.evaluation_periods,
            self.datapoints_to_alarm
        )
    }

    /// Whether it went into ALARM at any minute up to `minutes`.
    pub fn fired(&self, points: &[Point], minutes: u32) -> bool {
        (0..minutes).any(|m| self.in_alarm_at(points, m))
    }
}
