//! The metric lines (EMF) the functions write: valid, bounded, and the
//! ones the template's alarms watch.

use publish_cancel::auth::{AuthTrace, Check, Denied, Scheme};
use publish_cancel::metrics::{Metrics, RequestFacts, NAMESPACE};
use publish_cancel::outcome::Outcome;
use serde_json::{json, Value};

use crate::common::emf::check_emf;

fn facts(auth: AuthTrace, outcome: Outcome) -> RequestFacts<'static> {
    RequestFacts {
        request_id: "r-1",
        route: "cancel",
        outcome,
        auth,
        latency_ms: 12.345_678,
    }
}

/// A line as CloudWatch reads it: one JSON document.
fn parse(line: String) -> Value {
    assert!(!line.contains('\n'), "one line: {line}");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn a_request_line_is_valid_emf_with_bounded_dimensions() {
    let m = Metrics::new("stack-CancelFunction-ABC");
    let ok = AuthTrace {
        scheme: Scheme::Basic,
        check: Check::CachedPassword,
        denied: None,
    };
    let line = parse(m.request_line(&facts(ok, Outcome::Cancelled), 1_795_718_847_000));
    check_emf(&line).unwrap();
    assert_eq!(line["Function"], "stack-CancelFunction-ABC");
    assert_eq!(line["Outcome"], "cancelled");
    assert_eq!(line["Route"], "cancel");
    assert_eq!(line["CredentialCacheHits"], 1);
    assert_eq!(line["Argon2Verifications"], 0);
    assert_eq!(line["Latency"], 12.346);
    assert!(line.get("AuthFailure").is_none());
    assert_eq!(line["requestId"], "r-1");
    // Whatever the function's name holds, the line stays JSON.
    let odd = Metrics::new("f\"n\\\n");
    assert_eq!(
        parse(odd.request_line(&facts(ok, Outcome::Cancelled), 1))["Function"],
        "f\"n\\\n"
    );
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
        2
    );

    let refused = AuthTrace {
        scheme: Scheme::Basic,
        check: Check::Argon2,
        denied: Some(Denied::WrongPassword),
    };
    let line = parse(m.request_line(&facts(refused, Outcome::Unauthenticated), 1));
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
    let report = publish_cancel::reconcile::ReconcileReport {
        found: 3,
        resent: 2,
        busy: 6,
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
/// code writes, under exactly the dimensions it writes it with: a renamed
/// metric, or one more (or one fewer) dimension on either side, would leave
/// an alarm that never fires. CloudWatch matches a metric by its name and
/// its whole set of dimensions.
#[test]
fn every_alarm_of_the_template_watches_an_emitted_metric() {
    let m = Metrics::new("f");
    let refused = AuthTrace {
        scheme: Scheme::Basic,
        check: Check::Argon2,
        denied: Some(Denied::UnknownUser),
    };
    // What each function writes: the HTTP and automation functions a
    // request line per request or command (`api`, `frontdoor::automation`),
    // the reconciler a reconcile line per page (`frontdoor::schedule`).
    let requests = || {
        vec![
            parse(m.request_line(&facts(refused, Outcome::Unauthenticated), 1)),
            parse(m.request_line(&facts(AuthTrace::default(), Outcome::Cancelled), 1)),
        ]
    };
    let emitted: Vec<(&str, Value)> = requests()
        .into_iter()
        .map(|l| ("CancelFunction", l))
        .chain(requests().into_iter().map(|l| ("AutomationFunction", l)))
        .chain([(
            "ReconcilerFunction",
            m.reconcile_line(&Default::default(), 1),
        )])
        .collect();
    // (function, metric, sorted dimension names) as each line declares them.
    let declared: Vec<(&str, String, Vec<String>, &Value)> = emitted
        .iter()
        .flat_map(|(function, line)| {
            line["_aws"]["CloudWatchMetrics"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(move |d| {
                    let sets: Vec<Vec<String>> = d["Dimensions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|set| {
                            let mut names: Vec<String> = set
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|n| n.as_str().unwrap().to_owned())
                                .collect();
                            names.sort();
                            names
                        })
                        .collect();
                    d["Metrics"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(move |metric| {
                            let name = metric["Name"].as_str().unwrap().to_owned();
                            sets.clone()
                                .into_iter()
                                .map(move |set| (*function, name.clone(), set, line))
                        })
                })
        })
        .collect();
    let alarms = crate::common::template::stack_py(&["alarm-metrics"]);
    let mut ours = 0;
    for alarm in alarms.as_array().unwrap() {
        if alarm["namespace"] != NAMESPACE {
            continue;
        }
        ours += 1;
        let metric = alarm["metric"].as_str().unwrap();
        let dimensions: Vec<String> = alarm["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect();
        // The function the alarm names must be one that writes the line.
        let function = alarm["function"].as_str();
        let line = declared
            .iter()
            .find(|(writer, name, set, _)| {
                name == metric && *set == dimensions && function.is_none_or(|f| f == *writer)
            })
            .map(|(_, _, _, line)| *line)
            .unwrap_or_else(|| {
                panic!(
                    "alarm {}: {function:?} writes no line declaring {metric} with dimensions {dimensions:?}",
                    alarm["alarm"]
                )
            });
        assert!(line[metric].is_number(), "{metric}: {line}");
        for d in &dimensions {
            assert!(line[d].is_string(), "{metric}: no {d} value in {line}");
        }
    }
    assert!(ours >= 4, "{ours} alarms on our metrics found");
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

/// docs/operating.md's metrics table names exactly the metrics the lines
/// declare, each with exactly the dimension sets it is declared under.
#[test]
fn the_docs_list_every_metric_with_its_dimensions() {
    let m = Metrics::new("f");
    let refused = AuthTrace {
        scheme: Scheme::Basic,
        check: Check::Argon2,
        denied: Some(Denied::UnknownUser),
    };
    let lines = [
        parse(m.request_line(&facts(refused, Outcome::Unauthenticated), 1)),
        m.reconcile_line(&Default::default(), 1),
        parse(m.cold_start_line(1)),
    ];
    // metric -> its dimension sets, each as "A, B".
    let mut written: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in &lines {
        check_emf(line).unwrap();
        for d in line["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            for metric in d["Metrics"].as_array().unwrap() {
                for set in d["Dimensions"].as_array().unwrap() {
                    let names: Vec<&str> = set
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap())
                        .collect();
                    written
                        .entry(metric["Name"].as_str().unwrap().to_owned())
                        .or_default()
                        .insert(names.join(", "));
                }
            }
        }
    }
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operating.md")).unwrap();
    let table = &docs[docs
        .find("| metric | dimensions | meaning |")
        .expect("the metrics table")..];
    let mut documented: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for row in table.lines().take_while(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = row.split('|').collect();
        let sets: std::collections::BTreeSet<String> = cells[2]
            .split(';')
            .map(|s| {
                s.split('(')
                    .next()
                    .unwrap()
                    .replace('`', "")
                    .trim()
                    .to_owned()
            })
            .collect();
        for name in cells[1].split(',') {
            documented.insert(name.trim().trim_matches('`').to_owned(), sets.clone());
        }
    }
    assert_eq!(documented, written, "docs/operating.md, \"Metrics\"");
}
