//! Events an attacker (or a misrouted integration) can make the function
//! receive, with what each must get: an HTTP answer with this status, or an
//! invocation error because it is not an HTTP event at all. Each class once
//! made lambda_http panic, or is a near variant of one that did.

use serde_json::{json, Value};

use super::sample_events::events_dir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// An HTTP response with this status.
    Status(u16),
    /// An invocation error (not an HTTP event, or not JSON).
    NotHttp,
}

fn sample(name: &str) -> Value {
    let text = std::fs::read_to_string(events_dir().join(name)).expect("sample event");
    serde_json::from_str(&text).expect("sample is JSON")
}

fn with(mut event: Value, edits: &[(&str, Value)]) -> Value {
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        let target = if parent.is_empty() {
            &mut event
        } else {
            event
                .pointer_mut(parent)
                .unwrap_or_else(|| panic!("no {parent} in the sample"))
        };
        target[key] = value.clone();
    }
    event
}

/// (name, event text, expected answer). None of them may change the stores.
pub fn catalogue() -> Vec<(String, String, Want)> {
    let rest = || sample("apigw-rest-wrong-password.json");
    let v2 = || sample("apigw-http-cancel-basic.json");
    let url = || sample("function-url-wrong-password.json");
    let alb = || sample("alb-wrong-method.json");
    let wrong_pw = "Basic YWxpY2U6bm90LXRoZS1wYXNzd29yZA==";
    let long_path = format!(
        "/api/users/alice/appliances/1/images/2/pimages/3/cancel/{}",
        "a".repeat(100_000)
    );
    let many_headers: serde_json::Map<String, Value> = (0..40_000)
        .map(|i| (format!("x-h{i}"), json!("v")))
        .collect();
    let many_multi: serde_json::Map<String, Value> = (0..40_000)
        .map(|i| (format!("x-h{i}"), json!(["v"])))
        .collect();
    let mut deep = String::new();
    for _ in 0..100_000 {
        deep.push('[');
    }

    let mut out: Vec<(&str, Value, Want)> = vec![
        // A body flagged base64 that is not base64 (lambda_http decoded it
        // with expect()).
        (
            "rest: body flagged base64, not base64",
            with(
                rest(),
                &[
                    ("/body", json!("!!!* not base64 *!!!")),
                    ("/isBase64Encoded", json!(true)),
                ],
            ),
            Want::Status(401),
        ),
        (
            "function URL: body flagged base64, not base64",
            with(
                url(),
                &[("/body", json!("%%%")), ("/isBase64Encoded", json!(true))],
            ),
            Want::Status(401),
        ),
        // Header values no URL can hold (lambda_http built one from them).
        (
            "http api: Host and X-Forwarded-Proto no URL can hold",
            with(
                v2(),
                &[
                    ("/headers/host", json!("exa mple.com:99999/\\@")),
                    ("/headers/x-forwarded-proto", json!("ht tp:/")),
                    ("/headers/authorization", json!(wrong_pw)),
                ],
            ),
            Want::Status(401),
        ),
        (
            "rest: Host no URL can hold",
            with(
                rest(),
                &[
                    ("/headers/host", json!("a b")),
                    ("/multiValueHeaders/host", json!(["a b"])),
                ],
            ),
            Want::Status(401),
        ),
        (
            "rest: no Host and no domain name",
            with(
                rest(),
                &[
                    ("/headers/host", Value::Null),
                    ("/multiValueHeaders/host", Value::Null),
                    ("/requestContext/domainName", Value::Null),
                ],
            ),
            Want::Status(401),
        ),
        // A raw query http::Uri refuses (a function URL passes spaces through).
        (
            "function URL: raw query with a space and a DEL",
            with(
                url(),
                &[("/rawQueryString", json!("apiKey=a b&signature=\u{7f}"))],
            ),
            Want::Status(401),
        ),
        (
            "http api: raw query of 1 MB",
            with(
                v2(),
                &[
                    ("/rawQueryString", json!("a".repeat(1 << 20))),
                    ("/headers/authorization", json!(wrong_pw)),
                ],
            ),
            Want::Status(401),
        ),
        (
            "function URL: path with spaces, controls and bad escapes",
            with(
                url(),
                &[
                    ("/rawPath", json!("/api/users/al ice/%zz/\u{1}/\u{0}")),
                    ("/requestContext/http/path", json!("/x y")),
                ],
            ),
            Want::Status(404),
        ),
        (
            "rest: path of 100 KB",
            with(rest(), &[("/path", json!(long_path))]),
            Want::Status(404),
        ),
        (
            "rest: no path at all",
            with(rest(), &[("/path", Value::Null)]),
            Want::Status(404),
        ),
        // Not HTTP: a method that is not a token, header names and values
        // that are not HTTP, more headers than a HeaderMap holds.
        (
            "rest: method with a space",
            with(rest(), &[("/httpMethod", json!("DEL ETE"))]),
            Want::Status(400),
        ),
        (
            "http api: empty method",
            with(v2(), &[("/requestContext/http/method", json!(""))]),
            Want::Status(400),
        ),
        (
            "rest: header value with a line feed",
            with(
                rest(),
                &[
                    ("/headers/x-injected", json!("a\r\nSet-Cookie: x=y")),
                    (
                        "/multiValueHeaders/x-injected",
                        json!(["a\r\nSet-Cookie: x=y"]),
                    ),
                ],
            ),
            Want::Status(400),
        ),
        (
            "alb: header name with a space",
            with(alb(), &[("/multiValueHeaders/bad name", json!(["x"]))]),
            Want::Status(400),
        ),
        (
            "rest: header value that is a number",
            with(rest(), &[("/multiValueHeaders/accept", json!([7]))]),
            Want::Status(400),
        ),
        (
            "rest: 40 000 headers",
            with(
                rest(),
                &[
                    ("/headers", Value::Object(many_headers.clone())),
                    ("/multiValueHeaders", Value::Object(many_multi)),
                ],
            ),
            Want::Status(400),
        ),
        (
            "http api: 40 000 headers",
            with(v2(), &[("/headers", Value::Object(many_headers))]),
            Want::Status(400),
        ),
        // Two Authorization headers: one rule for every front door.
        (
            "rest: two Authorization values, the last one valid",
            with(
                sample("apigw-rest-cancel-basic.json"),
                &[(
                    "/multiValueHeaders/authorization",
                    json!([wrong_pw, "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ="]),
                )],
            ),
            Want::Status(401),
        ),
        (
            "alb with multi-value headers: two Authorization values, the last one valid",
            with(
                sample("alb-cancel-basic.json"),
                &[(
                    "/multiValueHeaders/authorization",
                    json!([wrong_pw, "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ="]),
                )],
            ),
            Want::Status(401),
        ),
        (
            "http api: two Authorization headers, joined by a comma",
            with(
                v2(),
                &[(
                    "/headers/authorization",
                    json!(format!("{wrong_pw},Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=")),
                )],
            ),
            Want::Status(401),
        ),
        // Not HTTP events at all.
        ("empty object", json!({}), Want::NotHttp),
        ("array", json!([1, 2]), Want::NotHttp),
        ("string", json!("DELETE /api/users/alice"), Want::NotHttp),
        ("number", json!(42), Want::NotHttp),
        ("null", Value::Null, Want::NotHttp),
        (
            "an SQS batch",
            json!({"Records": [{"messageId": "1", "eventSource": "aws:sqs", "body": "{}"}]}),
            Want::NotHttp,
        ),
        (
            "an EventBridge event",
            json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
            Want::NotHttp,
        ),
        (
            "a 2.0 event without requestContext.http",
            with(v2(), &[("/requestContext/http", Value::Null)]),
            Want::NotHttp,
        ),
    ];
    let mut texts: Vec<(String, String, Want)> = out
        .drain(..)
        .map(|(n, v, w)| (n.to_owned(), v.to_string(), w))
        .collect();
    // Not JSON, and JSON nested deeper than any parser should follow.
    texts.push((
        "not JSON".into(),
        "{\"httpMethod\": DELETE".into(),
        Want::NotHttp,
    ));
    texts.push((
        "100 000 nested arrays, unclosed".into(),
        deep.clone(),
        Want::NotHttp,
    ));
    // Valid JSON, as deep: past serde_json's limit of 128 for a Value.
    let closed = deep.clone() + &"]".repeat(100_000);
    // An HTTP event with one more field (the last of a repeated key wins),
    // as text: no `Value` holds it.
    let with_last = |field: &str, value: &str| {
        let event = rest().to_string();
        format!("{}, \"{field}\": {value}}}", &event[..event.len() - 1])
    };
    texts.push((
        "rest: a body nested 100 000 deep (a field the function does not read)".into(),
        with_last("body", &closed),
        Want::Status(401),
    ));
    texts.push((
        "rest: a header nested 100 000 deep".into(),
        with_last("headers", &format!("{{\"x\": {closed}}}")),
        Want::NotHttp,
    ));
    texts.push(("100 000 nested arrays".into(), closed, Want::NotHttp));
    texts
}
