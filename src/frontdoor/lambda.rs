//! Lambda events in, Lambda HTTP responses out: API Gateway REST APIs
//! (payload 1.0), HTTP APIs and function URLs (payload 2.0), and ALB target
//! groups, in `lambda_http`'s types. One pass over the event's text keeps
//! the fields this function reads (`http_fields`; the rest is skipped
//! unread). So that no event can panic or end the process: `precheck`
//! first (the origin, from explicit fields only, and the limits the typed
//! events do not keep), then the crate's typed event, then our own mapping
//! to the handler's request, never the crate's `http::Request` conversion,
//! which panics on what an attacker can send (docs/developing.md, "Crates,
//! and what each is for", says which calls and why). Responses are the
//! origin's own response types.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use lambda_http::aws_lambda_events::alb::{AlbTargetGroupRequest, AlbTargetGroupResponse};
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::request::LambdaRequest;
use lambda_http::Body;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::http_fields::http_fields;
use crate::api::{Api, ApiRequest};
use crate::ports::{CancelWrites, PublishReader, StopQueue, Users};

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

/// Reads an HTTP event: `precheck`, the typed event, our mapping.
/// `Err(Ok(..))`: not an HTTP event; `Err(Err(..))`: an HTTP event that is
/// not a valid request.
pub fn parse(mut event: Value) -> Result<HttpEvent, Result<NotHttp, Malformed>> {
    let (shape, headers) = precheck(&mut event)?;
    // What a 400 may echo, kept before the event moves into its type.
    let echo = malformed(&event, shape, "event fields");
    let typed = typed(shape, event).map_err(|_| Err(echo))?;
    Ok(request(shape, typed, headers))
}

/// What of an HTTP event can be echoed, from its JSON.
fn malformed(event: &Value, shape: Shape, reason: &'static str) -> Malformed {
    let (method, raw_path) = match shape {
        Shape::HttpV2 => (
            str_at(event, &["requestContext", "http", "method"]),
            str_at(event, &["rawPath"]).or(str_at(event, &["requestContext", "http", "path"])),
        ),
        Shape::RestV1 | Shape::Alb { .. } => {
            (str_at(event, &["httpMethod"]), str_at(event, &["path"]))
        }
    };
    let stage = match shape {
        Shape::RestV1 | Shape::HttpV2 => str_at(event, &["requestContext", "stage"]),
        Shape::Alb { .. } => None,
    };
    Malformed {
        shape,
        reason,
        method: method.unwrap_or_default().to_owned(),
        path: without_stage(raw_path.unwrap_or_default(), stage).to_owned(),
    }
}

/// Step 1: the origin, and every limit the typed event does not keep
/// (module doc). Total: any JSON value gives an answer, never a panic.
/// The header fields go out of the event into their maps (`read_headers`).
fn precheck(event: &mut Value) -> Result<(Shape, Headers), Result<NotHttp, Malformed>> {
    let shape = Shape::of(event).map_err(Ok)?;
    let refuse = |event: &Value, reason| Err(malformed(event, shape, reason));
    if shape == (Shape::Alb { multi: false }) {
        // Without multi-value headers ALB passes one value per name, so a
        // second Authorization could not be seen (and refused): this
        // function requires the target group attribute
        // lambda.multi_value_headers.enabled (README, docs/local-invocation.md, template).
        return Err(refuse(
            event,
            "ALB target group without multi-value headers",
        ));
    }
    let method = match shape {
        Shape::HttpV2 => str_at(event, &["requestContext", "http", "method"]),
        Shape::RestV1 | Shape::Alb { .. } => str_at(event, &["httpMethod"]),
    };
    if Method::from_bytes(method.unwrap_or_default().as_bytes()).is_err() {
        return Err(refuse(event, "method"));
    }
    let headers = match read_headers(event, shape) {
        Ok(headers) => headers,
        Err(reason) => return Err(refuse(event, reason)),
    };
    for field in ["queryStringParameters", "multiValueQueryStringParameters"] {
        let params = event.get(field).and_then(Value::as_object);
        if params
            .into_iter()
            .flatten()
            .any(|(_, v)| v.as_array().is_some_and(Vec::is_empty))
        {
            return Err(refuse(event, "query parameter without a value"));
        }
    }
    Ok((shape, headers))
}

/// An event's header maps, `headers` and `multiValueHeaders`.
#[derive(Debug)]
struct Headers {
    single: HeaderMap,
    multi: HeaderMap,
}

/// Takes the header fields out of the event into their maps, as the typed
/// events build them (a string inserted, each of a list appended; a null
/// value is an absent header), refusing what they would get wrong or panic
/// on: each value a valid header value under a valid name, at most
/// `MAX_HEADERS` in all, and no name twice (in any case) within a
/// single-value map. A field that is no map is what the typed events
/// refused: "event fields". (Read here rather than by the typed events,
/// whose untagged value type tries its forms in turn: a third of the cost
/// of reading an event.)
fn read_headers(event: &mut Value, shape: Shape) -> Result<Headers, &'static str> {
    let fields = event.as_object_mut().ok_or("event fields")?;
    let (single, multi) = (fields.remove("headers"), fields.remove("multiValueHeaders"));
    let mut count = 0usize;
    let mut read = |field: Option<Value>, multi: bool| -> Result<HeaderMap, &'static str> {
        let mut map = HeaderMap::new();
        let entries = match field {
            None | Some(Value::Null) => return Ok(map),
            Some(Value::Object(entries)) => entries,
            Some(_) => return Err("event fields"),
        };
        for (name, values) in entries {
            let name = HeaderName::from_bytes(name.as_bytes());
            // One value: counted, its name and value checked, then added
            // (a list's appended, a lone one inserted).
            let mut add = |map: &mut HeaderMap, value: Value, list: bool| {
                count += 1;
                if count > MAX_HEADERS {
                    return Err("too many headers");
                }
                let name = name.as_ref().map_err(|_| "header name")?;
                let value = match value {
                    Value::String(v) => HeaderValue::try_from(v).map_err(|_| "header value")?,
                    _ => return Err("header value"),
                };
                if list {
                    map.append(name, value);
                } else if !multi && map.contains_key(name) {
                    return Err("repeated header name");
                } else {
                    map.insert(name.clone(), value);
                }
                Ok(())
            };
            match values {
                Value::Null => {}
                Value::Array(values) if multi => {
                    for value in values {
                        add(&mut map, value, true)?;
                    }
                }
                one => add(&mut map, one, false)?,
            }
        }
        Ok(map)
    };
    let single = read(single, false)?;
    let multi = match multi {
        // Not a field of a 2.0 event: its type ignores it.
        Some(_) if shape == Shape::HttpV2 => HeaderMap::new(),
        multi => read(multi, true)?,
    };
    Ok(Headers { single, multi })
}

/// Step 2: the crate's typed event for `shape`'s origin, its strings moved
/// out of the event (not copied).
fn typed(shape: Shape, event: Value) -> Result<LambdaRequest, &'static str> {
    let invalid = |_| "event fields";
    Ok(match shape {
        Shape::RestV1 => LambdaRequest::ApiGatewayV1(
            ApiGatewayProxyRequest::deserialize(event).map_err(invalid)?,
        ),
        Shape::HttpV2 => LambdaRequest::ApiGatewayV2(
            ApiGatewayV2httpRequest::deserialize(event).map_err(invalid)?,
        ),
        Shape::Alb { .. } => {
            LambdaRequest::Alb(AlbTargetGroupRequest::deserialize(event).map_err(invalid)?)
        }
    })
}

/// Step 3: the handler's request from the typed event (no URL built, the
/// body never read).
fn request(shape: Shape, typed: LambdaRequest, headers: Headers) -> HttpEvent {
    let Headers { single, multi } = headers;
    let (method, path, query, headers) = match typed {
        LambdaRequest::ApiGatewayV1(e) => (
            e.http_method,
            without_stage(
                e.path.as_deref().unwrap_or_default(),
                e.request_context.stage.as_deref(),
            )
            .to_owned(),
            query(
                &e.multi_value_query_string_parameters,
                &e.query_string_parameters,
                true,
            ),
            every_value(multi, single),
        ),
        LambdaRequest::ApiGatewayV2(e) => {
            let raw_path = e.raw_path.or(e.request_context.http.path);
            (
                e.request_context.http.method,
                without_stage(
                    raw_path.as_deref().unwrap_or_default(),
                    e.request_context.stage.as_deref(),
                )
                .to_owned(),
                e.raw_query_string.unwrap_or_default(),
                single,
            )
        }
        LambdaRequest::Alb(e) => {
            let multi_values = matches!(shape, Shape::Alb { multi: true });
            (
                e.http_method,
                e.path.unwrap_or_default(),
                query(
                    &e.multi_value_query_string_parameters,
                    &e.query_string_parameters,
                    false,
                ),
                if multi_values {
                    every_value(multi, single)
                } else {
                    single
                },
            )
        }
        // Only the three origins above are enabled (Cargo.toml).
        _ => (Method::GET, String::new(), String::new(), HeaderMap::new()),
    };
    HttpEvent {
        shape,
        method,
        path,
        query,
        headers,
    }
}

use serde::Deserialize as _;

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

/// Every header value. Where an event has both forms (REST, ALB with
/// multi-value headers on), `multiValueHeaders` holds every value and
/// `headers` only the last of each name, so the multi-value form is read,
/// and `headers` only for names it lacks: a repeated header stays
/// repeated, as on a socket (two `Authorization` headers authenticate
/// nobody, whatever the front door).
fn every_value(multi: HeaderMap, single: HeaderMap) -> HeaderMap {
    if multi.is_empty() {
        return single;
    }
    let mut all = multi;
    for (name, value) in &single {
        if !all.contains_key(name) {
            all.append(name.clone(), value.clone());
        }
    }
    all
}

/// What `percent_encoding` leaves alone in a query component: RFC 3986's
/// unreserved characters.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The raw query of a REST or ALB event, rebuilt from its parameters (the
/// multi-value ones when present): REST APIs pass them decoded, so they
/// are re-encoded (`encode`); ALB passes them as sent. In name order, since
/// the maps have no other. (`precheck` refused empty value lists, on which
/// `QueryMap::iter` would panic.)
fn query(multi: &QueryMap, single: &QueryMap, encode: bool) -> String {
    let params = if multi.is_empty() { single } else { multi };
    let mut pairs: Vec<(&str, &str)> = params.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let pairs: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| {
            if encode {
                format!(
                    "{}={}",
                    utf8_percent_encode(name, QUERY_COMPONENT),
                    utf8_percent_encode(value, QUERY_COMPONENT)
                )
            } else {
                format!("{name}={value}")
            }
        })
        .collect();
    pairs.join("&")
}

/// The cancel function's handler: UForge's endpoint on `Api`.
#[derive(Debug)]
pub struct HttpFunction<U, P, Q>(pub Api<U, P, Q>);

impl<U: Users, P: CancelWrites + PublishReader, Q: StopQueue> super::LambdaHandler
    for HttpFunction<U, P, Q>
{
    type Answer = HttpAnswer;

    async fn call(
        &self,
        event: lambda_runtime::LambdaEvent<super::RawEvent>,
    ) -> Result<HttpAnswer, lambda_runtime::Diagnostic> {
        handle(&self.0, event.payload.text(), &event.context.request_id)
            .await
            .map_err(|e| lambda_runtime::Diagnostic {
                error_type: "UnsupportedEvent".into(),
                error_message: e.to_string(),
            })
    }
}

/// A Lambda HTTP response: the response type of the event's origin,
/// serialised as it is (untagged).
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum HttpAnswer {
    Rest(ApiGatewayProxyResponse),
    Http(ApiGatewayV2httpResponse),
    Alb(AlbTargetGroupResponse),
}

impl HttpAnswer {
    /// As JSON, as Lambda receives it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|_| json!({"statusCode": 500, "body": null, "isBase64Encoded": false}))
    }
}

/// Serves one event, its text as Lambda delivered it: the Lambda HTTP
/// response, or `NotHttp`.
pub async fn handle<U: Users, P: CancelWrites + PublishReader, Q: StopQueue>(
    api: &Api<U, P, Q>,
    event: &str,
    request_id: &str,
) -> Result<HttpAnswer, NotHttp> {
    let Some(event) = http_fields(event) else {
        let not_http = NotHttp(super::UNREADABLE);
        tracing::warn!(request_id, error = %not_http, "refused event");
        return Err(not_http);
    };
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
    Ok(answer(shape, response))
}

/// The response in the shape the event's source expects: that origin's
/// response type.
pub fn answer(shape: Shape, response: http::Response<Vec<u8>>) -> HttpAnswer {
    let (parts, body) = response.into_parts();
    let (body, is_base64_encoded) = if body.is_empty() {
        (None, false)
    } else {
        // Our bodies are UTF-8 XML or JSON: text, so API Gateway needs no
        // binary media types.
        match String::from_utf8(body) {
            Ok(text) => (Some(Body::Text(text)), false),
            Err(e) => (Some(Body::Binary(e.into_bytes())), true),
        }
    };
    let status = parts.status;
    let headers = parts.headers;
    let response = match shape {
        // Only multiValueHeaders: API Gateway merges both fields, which
        // would send every header twice.
        Shape::RestV1 => HttpAnswer::Rest({
            let mut r = ApiGatewayProxyResponse::default();
            r.status_code = i64::from(status.as_u16());
            r.multi_value_headers = headers;
            r.body = body;
            r.is_base64_encoded = is_base64_encoded;
            r
        }),
        Shape::HttpV2 => HttpAnswer::Http({
            let mut r = ApiGatewayV2httpResponse::default();
            r.status_code = i64::from(status.as_u16());
            r.headers = headers;
            r.body = body;
            r.is_base64_encoded = is_base64_encoded;
            r
        }),
        // ALB reads the field matching its multi-value setting.
        Shape::Alb { multi } => HttpAnswer::Alb({
            let mut r = AlbTargetGroupResponse::default();
            r.status_code = i64::from(status.as_u16());
            r.status_description = Some(format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            ));
            if multi {
                r.multi_value_headers = headers;
            } else {
                r.headers = headers;
            }
            r.body = body;
            r.is_base64_encoded = is_base64_encoded;
            r
        }),
    };
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse` as the handler reaches it: through `http_fields`.
    fn parse(event: Value) -> Result<HttpEvent, Result<NotHttp, Malformed>> {
        super::parse(http_fields(&event.to_string()).expect("JSON"))
    }

    /// The HTTP sample events of `events/`: (file name, text).
    fn sample_http_events() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                let http = ["apigw", "alb", "function-url"];
                http.iter().any(|p| name.starts_with(p)).then(|| {
                    let text = std::fs::read_to_string(&path).unwrap();
                    (name, text)
                })
            })
            .collect()
    }

    /// Every sample event reads the same from its kept fields as from the
    /// whole event: nothing `parse` looks at is dropped.
    #[test]
    fn the_kept_fields_read_as_the_whole_event() {
        let mut read = 0;
        for (name, text) in sample_http_events() {
            let whole: Value = serde_json::from_str(&text).unwrap();
            let kept = http_fields(&text).unwrap();
            assert!(
                kept.to_string().len() < whole.to_string().len(),
                "{name}: nothing skipped"
            );
            assert_eq!(
                format!("{:?}", super::parse(kept)),
                format!("{:?}", super::parse(whole)),
                "{name}"
            );
            read += 1;
        }
        assert!(read >= 20, "sample events went missing: {read}");
    }

    fn rest(extra: Value) -> Value {
        let mut e = json!({
            "httpMethod": "DELETE",
            "path": "/api/users/alice/appliances/1/images/2/pimages/3/cancel",
            "requestContext": {"stage": "prod", "httpMethod": "DELETE"},
        });
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    /// The header maps are the ones `lambda_http`'s typed events build,
    /// on every sample event and on what `precheck` lets through.
    #[test]
    fn headers_are_the_typed_events_headers() {
        let typed_headers = |event: &Value| {
            // As the typed events read them, null values dropped first.
            let mut event = event.clone();
            for field in ["headers", "multiValueHeaders"] {
                if let Some(map) = event.get_mut(field).and_then(Value::as_object_mut) {
                    map.retain(|_, v| !v.is_null());
                }
            }
            match typed(Shape::of(&event).unwrap(), event).unwrap() {
                LambdaRequest::ApiGatewayV1(e) => every_value(e.multi_value_headers, e.headers),
                LambdaRequest::ApiGatewayV2(e) => e.headers,
                LambdaRequest::Alb(e) => every_value(e.multi_value_headers, e.headers),
                _ => unreachable!(),
            }
        };
        // The ALB sample without multi-value headers is refused (precheck).
        let mut events: Vec<Value> = sample_http_events()
            .into_iter()
            .filter(|(name, _)| !(name.starts_with("alb") && name.contains("single")))
            .map(|(_, text)| serde_json::from_str(&text).unwrap())
            .collect();
        assert!(events.len() >= 20);
        events.extend([
            rest(json!({
                "headers": {"Accept": "application/json", "X-A": "1", "x-b": null},
                "multiValueHeaders": {"accept": ["application/xml", "text/xml"],
                                      "X-A": "2", "x-a": ["3", "4"], "x-c": [], "x-d": null,
                                      "X-G": ["1", "2"], "x-g": "3"},
            })),
            rest(json!({"headers": null, "multiValueHeaders": {"Authorization": ["Basic a", "Basic b"]}})),
            rest(json!({"headers": {"authorization": "Basic a"}, "multiValueHeaders": {}})),
            json!({"version": "2.0", "rawPath": "/x",
                   "headers": {"accept": "a, b", "x-e": ""},
                   "multiValueHeaders": {"ignored": 7},
                   "requestContext": {"http": {"method": "DELETE"}}}),
        ]);
        for event in events {
            let ours = parse(event.clone()).unwrap().headers;
            assert_eq!(
                format!("{ours:?}"),
                format!("{:?}", typed_headers(&event)),
                "{event}"
            );
        }
        // What no map can hold is malformed, as the typed event was.
        for headers in [json!("x"), json!([]), json!(true)] {
            match parse(rest(json!({ "headers": headers }))) {
                Err(Err(m)) => assert_eq!(m.reason, "event fields"),
                other => panic!("{other:?}"),
            }
        }
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
        let req = parse(e.clone()).unwrap();
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
            match parse(e.clone()) {
                Err(Err(m)) => assert_eq!(m.reason, reason, "{e}"),
                other => panic!("{e}: {other:?}"),
            }
        }
        let many: serde_json::Map<String, Value> =
            (0..40_000).map(|i| (format!("h{i}"), json!("v"))).collect();
        match parse(rest(json!({"headers": many})).clone()) {
            Err(Err(m)) => assert_eq!(m.reason, "too many headers"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_the_typed_event_would_get_wrong_is_refused_first() {
        // A header name twice in a single-value map: the typed map would
        // keep one, and two Authorization values must authenticate nobody.
        let v2 = json!({
            "version": "2.0", "rawPath": "/x",
            "headers": {"Authorization": "Basic a", "authorization": "Basic b"},
            "requestContext": {"http": {"method": "DELETE"}},
        });
        match parse(v2.clone()) {
            Err(Err(m)) => assert_eq!(m.reason, "repeated header name"),
            other => panic!("{other:?}"),
        }
        // An empty list of values: `QueryMap::iter` would index past it.
        let e = rest(json!({"multiValueQueryStringParameters": {"a": []}}));
        match parse(e.clone()) {
            Err(Err(m)) => assert_eq!(m.reason, "query parameter without a value"),
            other => panic!("{other:?}"),
        }
        // A null header value is an absent header, as before.
        let e = rest(
            json!({"headers": {"host": null, "accept": "application/xml"},
                            "multiValueHeaders": {"host": null}}),
        );
        assert_eq!(
            parse(e.clone()).unwrap().headers["accept"],
            "application/xml"
        );
        // A field of the wrong type for the crate's type: malformed.
        match parse(rest(json!({"path": 7})).clone()) {
            Err(Err(m)) => assert_eq!(m.reason, "event fields"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alb_events_must_carry_multi_value_headers() {
        let single = json!({"httpMethod": "DELETE", "path": "/x", "requestContext": {"elb": {}},
                            "headers": {"authorization": "Basic b"}});
        match parse(single.clone()) {
            Err(Err(m)) => assert_eq!(m.reason, "ALB target group without multi-value headers"),
            other => panic!("{other:?}"),
        }
        let multi = json!({"httpMethod": "DELETE", "path": "/x", "requestContext": {"elb": {}},
                           "multiValueHeaders": {"authorization": ["Basic a", "Basic b"]}});
        let req = parse(multi.clone()).unwrap();
        assert_eq!(req.headers.get_all("authorization").iter().count(), 2);
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
        let req = parse(e.clone()).unwrap();
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
            parse(e.clone()).unwrap().query,
            "apiKey=PUB&signature=a%2Fb%2Bc%3D"
        );
        let alb = json!({
            "httpMethod": "DELETE", "path": "/x", "requestContext": {"elb": {}},
            "multiValueHeaders": {},
            "multiValueQueryStringParameters": {"apiKey": ["PUB"], "signature": ["a%2Fb"]},
        });
        assert_eq!(
            parse(alb.clone()).unwrap().query,
            "apiKey=PUB&signature=a%2Fb"
        );
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
        let v1 = answer(Shape::RestV1, resp()).to_json();
        assert_eq!(
            v1["multiValueHeaders"]["content-type"],
            json!(["application/xml"])
        );
        assert_eq!(v1["headers"], json!({}));
        assert_eq!(v1["body"], "<x/>");
        let v2 = answer(Shape::HttpV2, resp()).to_json();
        assert_eq!(v2["headers"]["content-type"], "application/xml");
        let alb = answer(Shape::Alb { multi: false }, resp()).to_json();
        assert_eq!(alb["statusDescription"], "401 Unauthorized");
        assert_eq!(alb["headers"]["content-type"], "application/xml");
        let empty = answer(
            Shape::RestV1,
            http::Response::builder()
                .status(204)
                .body(Vec::new())
                .unwrap(),
        )
        .to_json();
        assert_eq!(empty["body"], Value::Null);
        assert_eq!(empty["isBase64Encoded"], false);
    }
}
