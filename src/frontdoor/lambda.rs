//! Lambda events in, Lambda HTTP responses out: API Gateway REST APIs
//! (payload 1.0), HTTP APIs and function URLs (payload 2.0), and ALB target
//! groups.
//!
//! The event is read here, from its JSON, rather than by `lambda_http`:
//! that crate turns an event into an `http::Request` by building a URL from
//! the `Host` and `X-Forwarded-Proto` headers, the path and the query, and
//! by decoding a body flagged base64, and it panics (`expect`) when any of
//! those is not what it wants, or when an event carries more headers than
//! a `HeaderMap` holds. With `panic = "abort"` one such event killed the
//! process. This reader is total: every JSON value is either an HTTP event
//! (answered, with a 400 `uforgeError` when its method or a header is not
//! HTTP) or not one (an invocation error naming the problem). It builds no
//! URL and never reads the body, which this resource does not take. It is
//! also smaller: no `url`/`idna`, no event types we do not use.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use crate::api::{Api, ApiRequest};
use crate::ports::{Publishes, StopQueue, Users};

/// Most headers an event may carry (API Gateway allows about 10 KB of them;
/// `HeaderMap` itself panics beyond 32 768).
pub const MAX_HEADERS: usize = 512;

/// The event is not one of the HTTP events this function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported event: this function serves API Gateway (REST, HTTP API), function URL and ALB requests; {0}")]
pub struct NotHttp(pub &'static str);

/// Where an event came from, which decides the response's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// API Gateway REST API (payload 1.0).
    RestV1,
    /// API Gateway HTTP API or a function URL (payload 2.0).
    HttpV2,
    /// An ALB target group; `multi` when it sends multi-value headers.
    Alb { multi: bool },
}

impl Shape {
    /// Decided on explicit fields only: anything else is not an HTTP event.
    pub fn of(event: &Value) -> Result<Shape, NotHttp> {
        let ctx = event
            .get("requestContext")
            .ok_or(NotHttp("no requestContext"))?;
        if ctx.get("elb").is_some() {
            return Ok(Shape::Alb {
                multi: event.get("multiValueHeaders").is_some_and(Value::is_object),
            });
        }
        if event.get("version").and_then(Value::as_str) == Some("2.0") {
            return match ctx.get("http") {
                Some(http) if http.is_object() => Ok(Shape::HttpV2),
                _ => Err(NotHttp("a 2.0 event without requestContext.http")),
            };
        }
        if event.get("httpMethod").is_some() {
            return Ok(Shape::RestV1);
        }
        Err(NotHttp("no httpMethod"))
    }
}

/// The parts of the request `Api::handle` needs, owned.
#[derive(Debug)]
pub struct HttpEvent {
    pub shape: Shape,
    pub method: Method,
    /// As the client sent it, without an API Gateway stage prefix.
    pub path: String,
    /// Raw (percent-encoded) query, without `?`.
    pub query: String,
    pub headers: HeaderMap,
}

/// Why an HTTP event cannot be read as a request, with what of it can be
/// echoed in the 400.
#[derive(Debug)]
pub struct Malformed {
    pub shape: Shape,
    pub reason: &'static str,
    pub method: String,
    pub path: String,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_str)
}

/// Reads an HTTP event. `Err(Ok(..))`: not an HTTP event; `Err(Err(..))`:
/// an HTTP event that is not a valid request.
pub fn parse(event: &Value) -> Result<HttpEvent, Result<NotHttp, Malformed>> {
    let shape = Shape::of(event).map_err(Ok)?;
    let (method, raw_path) = match shape {
        Shape::HttpV2 => (
            str_at(event, &["requestContext", "http", "method"]),
            str_at(event, &["rawPath"]).or(str_at(event, &["requestContext", "http", "path"])),
        ),
        Shape::RestV1 | Shape::Alb { .. } => {
            (str_at(event, &["httpMethod"]), str_at(event, &["path"]))
        }
    };
    let method_text = method.unwrap_or_default();
    let stage = match shape {
        Shape::RestV1 | Shape::HttpV2 => str_at(event, &["requestContext", "stage"]),
        Shape::Alb { .. } => None,
    };
    let path = without_stage(raw_path.unwrap_or_default(), stage).to_owned();
    let malformed = |reason| Malformed {
        shape,
        reason,
        method: method_text.to_owned(),
        path: path.clone(),
    };
    let method =
        Method::from_bytes(method_text.as_bytes()).map_err(|_| Err(malformed("method")))?;
    let headers = headers(event, shape).map_err(|reason| Err(malformed(reason)))?;
    let query = query(event, shape);
    Ok(HttpEvent {
        shape,
        method,
        path,
        query,
        headers,
    })
}

/// `/prod/api/...` → `/api/...` when the stage is `prod` (custom domains and
/// some integrations deliver the stage in the path).
fn without_stage<'a>(path: &'a str, stage: Option<&str>) -> &'a str {
    match stage {
        Some(stage) if !stage.is_empty() && stage != "$default" => path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(stage))
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path),
        _ => path,
    }
}

/// Every header value the event carries. Where an event has both forms
/// (REST, ALB with multi-value headers on), `multiValueHeaders` holds every
/// value and `headers` only the last of each name, so the multi-value form
/// is read: a repeated header stays repeated, as on a socket (two
/// `Authorization` headers authenticate nobody, whatever the front door).
fn headers(event: &Value, shape: Shape) -> Result<HeaderMap, &'static str> {
    let mut map = HeaderMap::new();
    let mut count = 0usize;
    let mut add = |name: &str, value: &str| -> Result<(), &'static str> {
        count += 1;
        if count > MAX_HEADERS {
            return Err("too many headers");
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "header name")?;
        let value = HeaderValue::from_str(value).map_err(|_| "header value")?;
        map.try_append(name, value)
            .map_err(|_| "too many headers")?;
        Ok(())
    };
    let multi = match shape {
        Shape::RestV1 | Shape::Alb { multi: true } => {
            event.get("multiValueHeaders").and_then(Value::as_object)
        }
        Shape::HttpV2 | Shape::Alb { multi: false } => None,
    };
    let single = event.get("headers").and_then(Value::as_object);
    if let Some(multi) = multi {
        for (name, values) in multi {
            for value in values.as_array().into_iter().flatten() {
                add(name, value.as_str().ok_or("header value")?)?;
            }
        }
    }
    for (name, value) in single.into_iter().flatten() {
        let listed = multi.is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(name)));
        if !listed && !value.is_null() {
            add(name, value.as_str().ok_or("header value")?)?;
        }
    }
    Ok(map)
}

/// What `percent_encoding` leaves alone in a query component: RFC 3986's
/// unreserved characters.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The raw query. HTTP APIs and function URLs pass it as sent. ALB passes
/// each parameter as sent, REST APIs each parameter decoded: rebuilt here
/// (REST: re-encoded), in name order since the event's maps have no other.
fn query(event: &Value, shape: Shape) -> String {
    if shape == Shape::HttpV2 {
        return str_at(event, &["rawQueryString"])
            .unwrap_or_default()
            .to_owned();
    }
    let params = event
        .get("multiValueQueryStringParameters")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .or(event
            .get("queryStringParameters")
            .and_then(Value::as_object));
    let mut pairs: Vec<String> = Vec::new();
    for (name, values) in params.into_iter().flatten() {
        let values: Vec<&str> = match values {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => vec![s.as_str()],
            _ => vec![],
        };
        for value in values {
            pairs.push(match shape {
                Shape::RestV1 => format!(
                    "{}={}",
                    utf8_percent_encode(name, QUERY_COMPONENT),
                    utf8_percent_encode(value, QUERY_COMPONENT)
                ),
                _ => format!("{name}={value}"),
            });
        }
    }
    pairs.join("&")
}

/// Serves one event: the Lambda HTTP response as JSON, or `NotHttp`.
pub async fn handle<U: Users, P: Publishes, Q: StopQueue>(
    api: &Api<U, P, Q>,
    event: &Value,
    request_id: &str,
) -> Result<Value, NotHttp> {
    let (shape, response) = match parse(event) {
        Ok(req) => {
            let response = api
                .handle(ApiRequest {
                    method: &req.method,
                    path: &req.path,
                    query: &req.query,
                    headers: &req.headers,
                    request_id,
                })
                .await;
            (req.shape, response)
        }
        Err(Ok(not_http)) => {
            tracing::warn!(request_id, error = %not_http, "refused event");
            return Err(not_http);
        }
        Err(Err(m)) => (
            m.shape,
            api.malformed(m.reason, &m.method, &m.path, request_id),
        ),
    };
    Ok(response_json(shape, response))
}

/// The response in the shape the event's source expects.
pub fn response_json(shape: Shape, response: http::Response<Vec<u8>>) -> Value {
    let (parts, body) = response.into_parts();
    let (body, base64) = if body.is_empty() {
        (Value::Null, false)
    } else {
        // Our bodies are UTF-8 XML or JSON: text, so API Gateway needs no
        // binary media types.
        match String::from_utf8(body) {
            Ok(text) => (Value::String(text), false),
            Err(e) => {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(e.into_bytes());
                (Value::String(b64), true)
            }
        }
    };
    let mut single = Map::new();
    let mut multi = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        single.insert(name.as_str().to_owned(), json!(values.join(",")));
        multi.insert(name.as_str().to_owned(), json!(values));
    }
    let status = parts.status.as_u16();
    match shape {
        // Only multiValueHeaders: API Gateway merges both fields, which
        // would send every header twice.
        Shape::RestV1 => json!({
            "statusCode": status,
            "headers": {},
            "multiValueHeaders": multi,
            "body": body,
            "isBase64Encoded": base64,
        }),
        Shape::HttpV2 => json!({
            "statusCode": status,
            "headers": single,
            "cookies": [],
            "body": body,
            "isBase64Encoded": base64,
        }),
        // ALB reads the field matching its multi-value setting.
        Shape::Alb { multi: use_multi } => {
            let mut out = json!({
                "statusCode": status,
                "statusDescription": format!("{status} {}", parts.status.canonical_reason().unwrap_or_default()),
                "body": body,
                "isBase64Encoded": base64,
            });
            let (key, value) = if use_multi {
                ("multiValueHeaders", Value::Object(multi))
            } else {
                ("headers", Value::Object(single))
            };
            out[key] = value;
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(extra: Value) -> Value {
        let mut e = json!({
            "httpMethod": "DELETE",
            "path": "/api/users/alice/appliances/1/images/2/pimages/3/cancel",
            "requestContext": {"stage": "prod"},
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[test]
    fn shapes_are_told_by_explicit_fields() {
        assert_eq!(Shape::of(&rest(json!({}))), Ok(Shape::RestV1));
        let v2 = json!({"version": "2.0", "rawPath": "/x", "requestContext": {"http": {"method": "GET"}}});
        assert_eq!(Shape::of(&v2), Ok(Shape::HttpV2));
        let alb =
            json!({"httpMethod": "GET", "requestContext": {"elb": {}}, "multiValueHeaders": {}});
        assert_eq!(Shape::of(&alb), Ok(Shape::Alb { multi: true }));
        for not_http in [
            json!(null),
            json!([]),
            json!("GET /"),
            json!({}),
            json!({"version": "2.0", "requestContext": {}}),
            json!({"requestContext": {"stage": "prod"}}),
            json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            json!({"Records": [{"eventSource": "aws:sqs"}]}),
        ] {
            assert!(Shape::of(&not_http).is_err(), "{not_http}");
        }
    }

    #[test]
    fn the_stage_prefix_is_removed_only_when_it_is_one() {
        assert_eq!(without_stage("/prod/api/x", Some("prod")), "/api/x");
        assert_eq!(without_stage("/api/x", Some("prod")), "/api/x");
        assert_eq!(
            without_stage("/production/x", Some("prod")),
            "/production/x"
        );
        assert_eq!(without_stage("/prod", Some("prod")), "/prod");
        assert_eq!(without_stage("/x", Some("$default")), "/x");
        assert_eq!(without_stage("/x", None), "/x");
    }

    #[test]
    fn repeated_headers_stay_repeated() {
        let e = rest(json!({
            "headers": {"Authorization": "Basic b", "Accept": "application/xml"},
            "multiValueHeaders": {"Authorization": ["Basic a", "Basic b"]},
        }));
        let req = parse(&e).unwrap();
        let auth: Vec<_> = req.headers.get_all("authorization").iter().collect();
        assert_eq!(auth, ["Basic a", "Basic b"]);
        // A header only in `headers` is still read.
        assert_eq!(req.headers["accept"], "application/xml");
    }

    #[test]
    fn bad_methods_and_headers_are_malformed_requests_not_panics() {
        for (e, reason) in [
            (rest(json!({"httpMethod": "DEL ETE"})), "method"),
            (rest(json!({"httpMethod": ""})), "method"),
            (rest(json!({"headers": {"bad name": "x"}})), "header name"),
            (rest(json!({"headers": {"x": "a\nb"}})), "header value"),
            (rest(json!({"headers": {"x": 7}})), "header value"),
            (
                rest(json!({"multiValueHeaders": {"x": [null]}})),
                "header value",
            ),
        ] {
            match parse(&e) {
                Err(Err(m)) => assert_eq!(m.reason, reason, "{e}"),
                other => panic!("{e}: {other:?}"),
            }
        }
        let many: Map<String, Value> = (0..40_000).map(|i| (format!("h{i}"), json!("v"))).collect();
        match parse(&rest(json!({"headers": many}))) {
            Err(Err(m)) => assert_eq!(m.reason, "too many headers"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_lambda_http_panicked_on_is_an_ordinary_request() {
        // Host and X-Forwarded-Proto that no URL can hold, a raw query with
        // a space, a body flagged base64 that is not: none of it matters.
        let e = json!({
            "version": "2.0",
            "rawPath": "/api/users/alice/appliances/1/images/2/pimages/3/cancel",
            "rawQueryString": "a=b c&\u{7f}",
            "headers": {"host": "exa mple/\\", "x-forwarded-proto": "ht tp"},
            "requestContext": {"http": {"method": "DELETE"}, "stage": "$default"},
            "body": "!!! not base64",
            "isBase64Encoded": true,
        });
        let req = parse(&e).unwrap();
        assert_eq!(req.query, "a=b c&\u{7f}");
        assert_eq!(req.method, Method::DELETE);
    }

    #[test]
    fn rest_queries_are_re_encoded_and_alb_ones_kept() {
        let e = rest(json!({
            "queryStringParameters": {"signature": "a/b+c=", "apiKey": "PUB"},
            "multiValueQueryStringParameters": {"signature": ["a/b+c="], "apiKey": ["PUB"]},
        }));
        assert_eq!(
            parse(&e).unwrap().query,
            "apiKey=PUB&signature=a%2Fb%2Bc%3D"
        );
        let alb = json!({
            "httpMethod": "DELETE", "path": "/x", "requestContext": {"elb": {}},
            "queryStringParameters": {"apiKey": "PUB", "signature": "a%2Fb"},
        });
        assert_eq!(parse(&alb).unwrap().query, "apiKey=PUB&signature=a%2Fb");
    }

    #[test]
    fn responses_take_the_source_s_shape() {
        let resp = || {
            http::Response::builder()
                .status(401)
                .header("content-type", "application/xml")
                .header("www-authenticate", "Basic realm=\"UForge\"")
                .body(b"<x/>".to_vec())
                .unwrap()
        };
        let v1 = response_json(Shape::RestV1, resp());
        assert_eq!(
            v1["multiValueHeaders"]["content-type"],
            json!(["application/xml"])
        );
        assert_eq!(v1["headers"], json!({}));
        assert_eq!(v1["body"], "<x/>");
        let v2 = response_json(Shape::HttpV2, resp());
        assert_eq!(v2["headers"]["content-type"], "application/xml");
        let alb = response_json(Shape::Alb { multi: false }, resp());
        assert_eq!(alb["statusDescription"], "401 Unauthorized");
        assert_eq!(alb["headers"]["content-type"], "application/xml");
        let empty = response_json(
            Shape::RestV1,
            http::Response::builder()
                .status(204)
                .body(Vec::new())
                .unwrap(),
        );
        assert_eq!(empty["body"], Value::Null);
        assert_eq!(empty["isBase64Encoded"], false);
    }
}
